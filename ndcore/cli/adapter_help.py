"""Help for ``--model``, ``--dataset`` and ``--segmenter`` that lists the installed adapters.

The list is made when the help is shown, not when the parser is built: building the parser
imports no plugin, and not the plugin layer. :func:`add_adapter_option` marks an option with its
kind of adapter; :class:`AdapterHelpFormatter`, the parser's ``formatter_class``, appends the
list to a marked option's help.
"""

from __future__ import annotations

import argparse

from ..errors import one_line


def adapter_listing(kind: str) -> str:
    """'name (description); ...' for every adapter of ``kind``."""
    from ..plugins import get_plugin_manager  # plugins are discovered when the help is shown

    pm = get_plugin_manager()
    items = []
    for reg in pm.adapters(kind):
        name = reg.name if reg.reachable else reg.qualified
        items.append(f"{name} ({reg.description})" if reg.description else name)
    failed = [i.name for i in pm.infos.values() if i.error]
    text = "; ".join(items) or "none installed"
    if failed:
        text += f" (plugins that failed to load: {', '.join(failed)}; see `ndcore plugins`)"
    return text


def add_adapter_option(parser, flag: str, kind: str, **kwargs) -> argparse.Action:
    """``parser.add_argument(flag, **kwargs)`` (a parser or an argument group), whose help ends
    with the installed adapters of ``kind`` when it is shown by an AdapterHelpFormatter."""
    action = parser.add_argument(flag, **kwargs)
    # Marked after add_argument, which may format the help to check it: no plugin loads then.
    action.adapter_kind = kind
    return action


class AdapterHelpFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action)
        kind = getattr(action, "adapter_kind", None)
        if kind is None:
            return text
        try:
            listing = adapter_listing(kind)
        except Exception as e:  # help must always print
            listing = f"(cannot list plugins: {one_line(e)})"
        # argparse expands %(...)s in what this returns: a description's '%' is kept as is
        return f"{text}. Installed: {listing.replace('%', '%%')}"
