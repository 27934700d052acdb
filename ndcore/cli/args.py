"""Parsing of command-line values shared by the subcommands."""

from __future__ import annotations

from typing import List, Optional, Tuple

from ..errors import NdcoreError


def csv_list(value: Optional[str]) -> Optional[List[str]]:
    """'a, b,,c' -> ['a', 'b', 'c']; '' or None -> None."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def parse_size(value: Optional[str], option: str) -> Optional[Tuple[int, int]]:
    """'N' -> (N, N); 'HxW' or 'H,W' -> (H, W); None -> None."""
    if not value:
        return None
    parts = value.lower().replace("x", ",").split(",")
    try:
        size = [int(p) for p in parts]
    except ValueError:
        raise NdcoreError(f"{option} {value!r}: expected N or HxW") from None
    if len(size) not in (1, 2) or min(size) < 1:
        raise NdcoreError(f"{option} {value!r}: expected N or HxW with positive sizes")
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def parse_ints(value: Optional[str], option: str) -> Optional[List[int]]:
    """'100,1,1' -> [100, 1, 1]; None -> None."""
    if not value:
        return None
    try:
        return [int(v) for v in csv_list(value) or []]
    except ValueError:
        raise NdcoreError(f"{option} {value!r}: expected comma-separated integers") from None


def parse_floats(value: Optional[str], option: str, example: str) -> Optional[List[float]]:
    """'0,0.5,1e3' -> [0.0, 0.5, 1000.0]; None -> None; ``example`` shows the form."""
    if value is None:
        return None
    try:
        return [float(v) for v in csv_list(value) or []]
    except ValueError:
        raise NdcoreError(f"{option} {value!r}: expected numbers, e.g. {example}") from None
