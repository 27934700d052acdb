"""benchmarks/RESULTS.md: one section per benchmark and device, rewritten by each run."""

from __future__ import annotations

import datetime
import platform
import re
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# ndcore benchmark results\n\nEach section is rewritten by the benchmark that owns it.\n"


def machine_description(device: str = "cpu") -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.cuda.current_device())
        return f"{gpu}, {platform.machine()}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return (f"CPU {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def update_results(title: str, command: str, body: str, note: str = "", device: str = "cpu") -> None:
    """Replace (or append) the section ``## title`` of RESULTS.md."""
    stamp = datetime.date.today().isoformat()
    section = (f"## {title}\n\n- machine: {machine_description(device)}\n- command: `{command}`\n"
               f"- date: {stamp}\n" + (f"- {note}\n" if note else "") + f"\n{body}\n\n")
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def report(rows, title: str, script: str, argv, note: str = "", device: str = "cpu",
           write: bool = True) -> None:
    """Print (measure, value) rows, and record them as RESULTS.md's section ``title``."""
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if write:
        body = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
        update_results(title, f"python benchmarks/{script} " + " ".join(argv), body,
                       note=note, device=device)
