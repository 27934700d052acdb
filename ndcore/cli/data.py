"""``ndcore data ...``: make, convert, fetch and check probe sets (Broden format)."""

from __future__ import annotations

from . import data_convert, data_fetch, data_segment


def register(sub) -> None:
    parser = sub.add_parser("data", help="make, convert, fetch and check probe sets (Broden format)")
    group = parser.add_subparsers(dest="data_command", required=True)
    for module in (data_segment, data_convert, data_fetch):
        module.register(group)
