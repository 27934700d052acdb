"""The consoles every command prints to (rich): results on stdout; warnings, status lines and
progress bars on stderr."""

from rich.console import Console

console = Console()
# resolves sys.stderr when it prints (so that a redirected or captured stderr is followed)
err_console = Console(stderr=True)
