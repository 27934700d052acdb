"""Viewing dissection results: HTML reports, run comparisons, and per-image explanations.

The functions are imported on first use, so that the command line starts fast.
"""

from importlib import import_module

__all__ = ["write_report", "compare_runs", "explain_image"]
_WHERE = {"write_report": ".html", "compare_runs": ".compare", "explain_image": ".explain"}


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
