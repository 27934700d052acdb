"""The console every command prints to (rich; progress bars go to stderr)."""

from rich.console import Console

console = Console()
