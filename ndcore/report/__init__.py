"""Viewing dissection results: HTML reports, run comparisons, and per-image explanations."""

from .compare import compare_runs
from .explain import explain_image
from .html import write_report

__all__ = ["write_report", "compare_runs", "explain_image"]
