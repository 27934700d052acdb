"""``ndcore paint``: GANPaint, a local web page to paint concepts into generated images."""

from __future__ import annotations

import argparse

from ..errors import NdcoreError
from .console import console


def cmd_paint(args: argparse.Namespace) -> int:
    try:
        from ..paint.server import serve
    except ImportError as e:  # the web stack is a dependency, but say what is missing
        raise NdcoreError(f"ndcore paint needs starlette and uvicorn ({e}); "
                          "pip install starlette uvicorn") from None
    if not 0 <= args.port <= 65535:
        raise NdcoreError(f"--port {args.port}: expected 0..65535")
    if args.threads < 0:
        raise NdcoreError(f"--threads {args.threads}: expected 0 (torch's default) or more")

    def announce(url, painter):
        names = ", ".join(f"{c['name']} ({c['units']})" for c in painter.concepts) or "none"
        console.print(f"GANPaint: {painter.info()['model']}, layer {painter.layer.layer}; "
                      f"concepts with units: {names}", highlight=False, soft_wrap=True)
        if args.host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            console.print(f"[yellow]warning:[/yellow] listening on {args.host}: anyone who can "
                          "reach it can run the generator", highlight=False)
        console.print(f"open [bold]{url}[/bold]  (Ctrl-C stops the server)", highlight=False)

    serve(args.run, args.layer, host=args.host, port=args.port, device=args.device,
          threads=args.threads or None, announce=announce)
    return 0


def register(sub) -> None:
    p = sub.add_parser("paint", help="GANPaint: paint concepts into a generator's images in a "
                                     "local web page")
    p.add_argument("run", help="a generator run written by `ndcore dissect --segmenter ...`")
    p.add_argument("--layer", help="layer to edit (default: the run's last layer)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for the generator (default 1: an edit is one sample; "
                        "0: torch's default)")
    p.set_defaults(func=cmd_paint)
