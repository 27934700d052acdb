"""``ndcore plugins`` and ``ndcore info``: what is installed."""

from __future__ import annotations

import sys

from rich.table import Table

from .console import console


def cmd_plugins(args) -> int:
    from ..plugins import get_plugin_manager

    table = Table(title="ndcore plugins")
    for col in ("plugin", "distribution", "version", "models", "datasets", "status"):
        table.add_column(col)
    for info in get_plugin_manager().plugin_infos():
        status = f"[red]failed: {info.error}[/red]" if info.error else "ok"
        table.add_row(info.name, info.distribution, info.version, ", ".join(info.models),
                      ", ".join(info.datasets), status)
    console.print(table)
    return 0


def cmd_info(args) -> int:
    import numpy
    import torch

    from .. import __version__
    from ..ops import extension_info

    ext = extension_info()
    table = Table(title="ndcore info", show_header=False)
    table.add_row("ndcore", __version__)
    table.add_row("python", sys.version.split()[0])
    table.add_row("torch", f"{torch.__version__} (CUDA build: {torch.version.cuda or 'no'})")
    table.add_row("numpy", numpy.__version__)
    table.add_row("extension ndcore._C", "loaded" if ext["loaded"] else f"[red]missing: {ext['error']}[/red]")
    table.add_row("compiled kernels", ", ".join(k for k in ("CPU", "CUDA") if ext["loaded"] and (k == "CPU" or ext["cuda"])) or "none (reference fallback)")
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
