"""``ndcore plugins`` and ``ndcore info``: what is installed."""

from __future__ import annotations

import sys

from rich.table import Table

from .console import console


def cmd_plugins(args) -> int:
    """Plugins with their distribution, version, hooks and status; then every adapter with its
    description; then one line per problem (clashes, refused registrations, failures)."""
    from rich.markup import escape

    from ..errors import debug_enabled
    from ..plugins import ADAPTER_KINDS, get_plugin_manager

    pm = get_plugin_manager(report_failures=False)  # failures are listed below instead
    pm.report_failures = False
    infos = pm.plugin_infos()
    table = Table(title="ndcore plugins")
    for col in ("plugin", "distribution", "version", "hooks", "provides", "status"):
        table.add_column(col)
    for info in infos:
        if info.error:
            status = f"[red]failed: {escape(info.error)}[/red]"
        elif info.notes:
            status = f"[yellow]{len(info.notes)} problem(s), see below[/yellow]"
        else:
            status = "ok"
        provides = "; ".join(f"{kind}s: {', '.join(names)}"
                             for kind, names in info.adapters.items() if names)
        table.add_row(escape(info.name), escape(info.distribution or "(in process)"),
                      escape(info.version), ", ".join(info.hooks), escape(provides), status)
    console.print(table)

    adapters = Table(title="adapters (spec NAME:TARGET)")
    for col in ("kind", "name", "description", "plugin"):
        adapters.add_column(col)
    for kind in ADAPTER_KINDS:
        for reg in pm.adapters(kind):
            name = reg.name if reg.reachable else f"{reg.qualified} [yellow](clash)[/yellow]"
            adapters.add_row(kind, name,
                             escape(reg.description or "-"),
                             escape(f"{reg.plugin} ({reg.distribution or 'in process'})"))
    console.print(adapters)

    for info in infos:
        for note in info.notes:
            console.print(f"[yellow]warning:[/yellow] plugin {escape(info.name)} "
                          f"({escape(info.where)}): {escape(note)}", highlight=False,
                          soft_wrap=True)
        if info.error:
            console.print(f"[red]failed:[/red] plugin {escape(info.name)} "
                          f"({escape(info.where)}): {escape(info.error)}", highlight=False,
                          soft_wrap=True)
            if debug_enabled() and info.traceback:
                print(info.traceback, file=sys.stderr)
    if not debug_enabled() and any(i.error for i in infos):
        console.print("(ndcore --traceback plugins shows the tracebacks)", highlight=False)
    return 0


def _op_path(ext) -> str:
    """Which path loaded the op: prebuilt (and its file), the JIT cache (and its directory), or
    the fallback (and why)."""
    if ext["path"] == "prebuilt":
        return f"prebuilt: {ext['where']}"
    if ext["path"] == "jit":
        return f"compiled at first use (JIT cache): {ext['where']} (not prebuilt: {ext['reason']})"
    if ext["path"] == "fallback":
        return f"fallback to the slow pure-PyTorch ops: {ext['reason']}"
    return f"not loaded: {ext['reason']}"


def cmd_info(args) -> int:
    import numpy
    import torch

    from rich.markup import escape

    from ..version import __version__

    try:
        from ..ops import extension_info
    except ImportError as exc:  # the op could not be loaded nor compiled: say why
        ext = {"loaded": False, "path": "none", "reason": str(exc), "record": None,
               "cache_dir": None}
    else:
        ext = extension_info(detailed=True)
    table = Table(title="ndcore info", show_header=False)
    table.add_column()
    table.add_column(overflow="fold")  # paths (the op's file, the JIT cache) shown whole
    table.add_row("ndcore", __version__)
    table.add_row("python", sys.version.split()[0])
    table.add_row("torch", f"{torch.__version__} (CUDA build: {torch.version.cuda or 'no'})")
    table.add_row("numpy", numpy.__version__)
    style = "" if ext["path"] in ("prebuilt", "jit") else "red"
    table.add_row("extension ndcore._C", escape(_op_path(ext)), style=style)
    if ext["record"]:
        rec = ext["record"]
        table.add_row("op built against", escape(
            f"torch {rec['torch']}, CUDA {rec['cuda'] or 'none'} (archs {rec['archs']}), "
            f"C++11 ABI {rec['cxx11_abi']}"))
    if ext["cache_dir"]:
        table.add_row("JIT build cache", escape(ext["cache_dir"]))
    table.add_row("compiled kernels", ", ".join(k for k in ("CPU", "CUDA") if ext["loaded"] and (k == "CPU" or ext["cuda"])) or ("none (reference fallback)" if ext["path"] == "fallback" else "none"))
    table.add_row("OpenMP", str(bool(ext.get("openmp"))))
    table.add_row("CPU threads", str(torch.get_num_threads()))
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    table.add_row("CUDA devices", ", ".join(gpus) or "none")
    console.print(table)
    return 0


def register(sub) -> None:
    p = sub.add_parser("plugins", help="list plugins and what they provide")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("info", help="versions, compiled kernels, devices")
    p.set_defaults(func=cmd_info)
