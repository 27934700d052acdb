"""Parsing of command-line values shared by the subcommands."""

from __future__ import annotations

from typing import List, Optional


def csv_list(value: Optional[str]) -> Optional[List[str]]:
    """'a, b,,c' -> ['a', 'b', 'c']; '' or None -> None."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None
