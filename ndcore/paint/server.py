"""The GANPaint server: a Starlette app, served by uvicorn on 127.0.0.1 by default.

Endpoints (all JSON except the page and its two assets):

    GET  /                     the page            GET /static/app.js, /static/style.css
    GET  /api/info             model, layer, image and layer sizes, the concepts with units
                               above chance and their default k (ndcore.paint.concepts)
    GET  /api/sample?seed=S    {"seed": S, "image": "data:image/png;base64,..."}
    POST /api/edit             {"seed", "mode": "ablate"|"insert", "concept", "k" | "units",
                                "region": {"size": [H, W], "rle": [...]}}
                               -> {"edit": <the replayable edit JSON>, "image": data URL,
                                   "units": [{"unit", "iou", "label", "value",
                                              "above_chance" (concept edits)}], "ms"}

Errors are ``{"error": "one line"}`` with a 4xx status. The edit itself is
:mod:`ndcore.gan.editing.edit_file`'s, the same code as ``ndcore intervene --edit`` and the Python API.

Safety: the ``Host`` header (and ``Origin``, when sent) must name this machine (a loopback
address, ``localhost`` or the address the server is bound to), as Jupyter checks it, so that a
page elsewhere cannot reach the server through DNS rebinding. Posts must be JSON (which a
cross-site form cannot send), bodies are capped in size and nesting, and at most
``max_pending`` generator requests wait at once: the rest get 503. The generator runs one
request at a time.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch

from ..capture import resolve_layers
from ..errors import NdcoreError
from ..gan.editing.edit_file import (SEED_MAX, check_seed, decode_mask, encode_mask, image_size,
                                     make_edit, png_bytes, render)
from ..gan.editing.intervene import load_generator_run
from .concepts import K_CAP, K_FRACTION, layer_concepts, ranking

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/style.css": ("style.css", "text/css; charset=utf-8")}
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
               "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'none'")
EDIT_FIELDS = {"seed", "mode", "concept", "k", "units", "region"}
# an edit is {"region": {"rle": [...]}}: 3 levels; deeper bodies are refused before parsing,
# as json.loads recurses once per level (a 40 KB "[[[[..." raised RecursionError: a 500)
MAX_DEPTH = 8
_NESTING = np.zeros(256, dtype=np.int32)  # +1 per [ or {, -1 per ] or }, by byte value
_NESTING[[ord("["), ord("{")]] = 1
_NESTING[[ord("]"), ord("}")]] = -1


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def json_depth(body: bytes) -> int:
    """The deepest nesting of [ and { in a JSON text, outside its strings: linear time and no
    recursion (no regex either: a string pattern backtracks on an unterminated string), so it
    can run before json.loads. Past a backslash outside a string the count may differ from a
    parser's, but a parser stops there (JSON has no backslash outside strings)."""
    if not body:
        return 0
    c = np.frombuffer(body, dtype=np.uint8)
    idx = np.arange(len(c), dtype=np.int32)
    # a quote is escaped when an odd number of backslashes runs up to it
    last_other = np.maximum.accumulate(np.where(c == ord("\\"), -1, idx))
    run = np.zeros(len(c), dtype=np.int32)
    run[1:] = idx[:-1] - last_other[:-1]
    quotes = (c == ord('"')) & (run % 2 == 0)
    outside = np.cumsum(quotes, dtype=np.int32) % 2 == 0  # after an even number of quotes
    return int(np.cumsum(np.where(outside, _NESTING[c], 0), dtype=np.int32).max(initial=0))


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class Painter:
    """The generator side of the page: one run, one layer, the originals cached per seed."""

    def __init__(self, run_dir, layer: Optional[str] = None, device: str = "cpu",
                 cache_size: int = 64):
        self.run = load_generator_run(run_dir, device)
        self.layer = self.run.layer(layer)
        self.device = device
        self.size = image_size(self.run, device)
        self.layer_size = self._layer_size()
        self.cache_size = cache_size
        self._originals: "OrderedDict[int, bytes]" = OrderedDict()
        self._lock = threading.Lock()  # one generator, hooks on its modules: one at a time
        # concepts: every label with units above chance, units ranked by IoU for the concept
        found, self.concept_rule = layer_concepts(self.layer, self.run.directory)
        self._concepts = {c.name: c for c in found}
        self.concepts = [c.info() for c in found]

    def _layer_size(self) -> Tuple[int, int]:
        seen = {}

        def hook(module, inputs, output):
            seen["shape"] = tuple(output.shape)  # returns None: the output is left as it is

        module = resolve_layers(self.run.adapter.module, [self.layer.layer])[self.layer.layer]
        handle = module.register_forward_hook(hook)
        try:
            render(self.run, None, 0, self.device)
        finally:
            handle.remove()
        return tuple(seen["shape"][-2:])

    def _concept_units(self, concept: object, k: object) -> List[int]:
        """The top ``k`` units of ``concept`` (default: its default k): its units above
        chance by IoU for it, then the others by IoU."""
        found = self._concepts.get(concept) if isinstance(concept, str) else None
        if found is None:
            names = ", ".join(c["name"] for c in self.concepts) or "none"
            if isinstance(concept, str) and concept in self.layer.vocabulary.label_names[1:]:
                raise NdcoreError(f"concept {concept!r}: no unit of layer {self.layer.layer!r} "
                                  f"beats chance for it ({self._rule_text()}); offered: {names}")
            raise NdcoreError(f"unknown concept {concept!r}: the run found units at layer "
                              f"{self.layer.layer!r} for {names}")
        if k is None:
            k = found.k
        n = self.layer.num_units
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
            raise NdcoreError(f"k {k!r}: expected an integer from 1 to {n} (the units of layer "
                              f"{self.layer.layer!r})")
        return ranking(self.layer.iou[:, found.label], found.units)[:k]

    def _rule_text(self) -> str:
        if self.concept_rule == "chance":
            return "IoU above the run's null_iou95"
        return f"IoU above the cut-off {self.layer.cutoff:g}; the run has no chance statistics"

    def info(self) -> Dict:
        model = self.run.config["model"]
        return {
            "model": model.get("spec"), "run": self.run.directory.name,
            "layer": self.layer.layer, "num_units": self.layer.num_units,
            "image_size": list(self.size), "layer_size": list(self.layer_size),
            "segmenter": self.run.segmenter_spec, "cutoff": self.layer.cutoff,
            "concepts": self.concepts, "seed_max": SEED_MAX,
            # how the concepts and their default k were chosen (docs/ganpaint.md)
            "concept_rule": {"above": self.concept_rule, "k_fraction": K_FRACTION,
                             "k_cap": K_CAP},
        }

    def original(self, seed: int) -> bytes:
        """PNG of sample 0 of ``seed``, unedited (kept for the last ``cache_size`` seeds)."""
        check_seed(seed)
        with self._lock:
            png = self._originals.get(seed)
            if png is None:
                png = png_bytes(render(self.run, None, seed, self.device))
                self._originals[seed] = png
                while len(self._originals) > self.cache_size:
                    self._originals.popitem(last=False)
            else:
                self._originals.move_to_end(seed)
            return png

    def apply(self, body: Dict) -> Dict:
        """One edit request of the page -> the edited image, the units and the edit's JSON."""
        start = time.perf_counter()
        if not isinstance(body, dict):
            raise NdcoreError("expected a JSON object")
        unknown = sorted(set(body) - EDIT_FIELDS)
        if unknown:
            raise NdcoreError(f"unknown field(s) {', '.join(unknown)}; expected "
                              f"{', '.join(sorted(EDIT_FIELDS))}")
        if "region" not in body or body["region"] is None:
            raise NdcoreError("region: paint a region first (the edit applies only there)")
        region = decode_mask(body["region"], self.size)
        if not bool(region.any()):
            raise NdcoreError("region: nothing is painted")
        concept = body.get("concept")
        units = body.get("units")
        k = body.get("k")
        if concept is not None:
            if units is not None:
                raise NdcoreError("give either units or a concept (with k)")
            units = self._concept_units(concept, k)
        elif k is not None:
            raise NdcoreError("k goes with a concept: give a concept, or the units")
        edit = make_edit(self.run, self.layer.layer, body.get("seed"), body.get("mode"),
                         units=units, region=region)
        edit.concept = concept  # the units are the concept's: the edit JSON says which
        with self._lock:
            png = png_bytes(render(self.run, edit, device=self.device))
        found = self._concepts.get(concept) if concept is not None else None
        rows = []
        for u, v in zip(edit.units, edit.values):
            unit = self.layer.units[u]
            iou = float(self.layer.iou[u, found.label]) if found is not None else unit.iou
            row = {"unit": u, "iou": round(iou, 4), "label": unit.label, "value": v}
            if found is not None:  # k beyond the concept's units reaches units below chance
                row["above_chance"] = u in found.units
            rows.append(row)
        return {"edit": edit.to_json(), "image": data_url(png), "units": rows,
                "ms": round(1000 * (time.perf_counter() - start), 1)}


# -- Host / Origin checks ---------------------------------------------------------------------

def split_host(value: str) -> Optional[str]:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:80' -> '::1', 'Name' -> 'name'; None if bad."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1:]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return value[1:end]
    name, sep, port = value.partition(":")
    if sep and not port.isdigit():
        return None
    return name or None


def _ip(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def allowed_names(bind_host: str) -> Tuple[set, bool]:
    """Host names the server answers to, and whether any IP address is (bound to all)."""
    names = {"localhost", "127.0.0.1", "::1"}
    bound = bind_host.strip("[]").lower()
    ip = _ip(bound)
    if ip is not None and ip.is_unspecified:
        return names, True
    names.add(bound)
    return names, False


def host_allowed(header: Optional[str], names: Iterable[str], any_ip: bool = False) -> bool:
    if not header:
        return False
    name = split_host(header)
    if name is None:
        return False
    ip = _ip(name)
    return name in names or (ip is not None and (ip.is_loopback or any_ip))


# -- the ASGI app -----------------------------------------------------------------------------

def create_app(painter: Painter, *, bind_host: str = "127.0.0.1", max_pending: int = 8,
               max_body: Optional[int] = None):
    """The Starlette app serving ``painter``; ``bind_host`` decides which Host headers pass."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    h, w = painter.size
    # the longest well-formed edit: one run length per pixel, each up to len(str(h*w)) digits
    max_body = max_body or 16384 + (len(str(h * w)) + 2) * (h * w + 1)
    names, any_ip = allowed_names(bind_host)
    assets = {path: ((STATIC / name).read_bytes(), kind) for path, (name, kind) in ASSETS.items()}
    pending = {"n": 0}

    def error(status: int, message: str, **headers) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    async def bounded(fn, *args):
        """Run ``fn`` in a worker thread; refuse when ``max_pending`` already wait or run."""
        if pending["n"] >= max_pending:
            raise RequestError(503, f"busy: {max_pending} requests are already queued; try "
                                    "again")
        pending["n"] += 1
        try:
            return await run_in_threadpool(fn, *args)
        except NdcoreError as e:
            raise RequestError(400, str(e)) from None
        finally:
            pending["n"] -= 1

    async def read_json(request: Request):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise RequestError(415, "send the request body as application/json")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            raise RequestError(413, f"request body over {max_body} bytes (the mask is too "
                                    f"large for a {w}x{h} image)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise RequestError(413, f"request body over {max_body} bytes (the mask is too "
                                        f"large for a {w}x{h} image)")
        body = bytes(body)
        # a well-formed edit opens 3 brackets: only bodies that open more are scanned
        opened = body.count(b"[") + body.count(b"{")
        depth = json_depth(body) if opened > MAX_DEPTH else 0
        if depth > MAX_DEPTH:
            raise RequestError(400, f"JSON nested {depth} deep: an edit nests at most "
                                    f"{MAX_DEPTH} deep")
        try:
            return json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(400, f"malformed JSON: {e}") from None
        except RecursionError:  # the depth check should prevent it; never a 500
            raise RequestError(400, "JSON nested too deep") from None

    async def page(request: Request) -> Response:
        content, kind = assets[request.url.path]
        headers = {"Cache-Control": "no-cache"}
        if kind.startswith("text/html"):
            headers["Content-Security-Policy"] = PAGE_POLICY
        return Response(content, media_type=kind, headers=headers)

    async def info(request: Request) -> Response:
        return JSONResponse(painter.info())

    async def sample(request: Request) -> Response:
        raw = request.query_params.get("seed")
        if raw is None:
            raise RequestError(400, "give ?seed=N")
        if not raw.isdigit() or len(raw) > 12:
            raise RequestError(400, f"seed {raw!r}: expected an integer from 0 to {SEED_MAX}")
        seed = int(raw)
        png = await bounded(painter.original, seed)
        return JSONResponse({"seed": seed, "image": data_url(png)})

    async def edit(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await bounded(painter.apply, body))

    def guarded(endpoint):
        async def handler(request: Request) -> Response:
            try:
                return await endpoint(request)
            except RequestError as e:
                extra = {"Retry-After": "1"} if e.status == 503 else {}
                return error(e.status, e.message, **extra)
        return handler

    routes = [Route(path, guarded(page), methods=["GET"]) for path in assets]
    routes += [Route("/api/info", guarded(info), methods=["GET"]),
               Route("/api/sample", guarded(sample), methods=["GET"]),
               Route("/api/edit", guarded(edit), methods=["POST"])]
    app = Starlette(routes=routes)
    app.state.painter = painter
    return HostCheck(SecurityHeaders(app), names, any_ip)


class HostCheck:
    """Refuse (403) requests whose Host, or Origin when sent, is not this machine."""

    def __init__(self, app, names, any_ip: bool):
        self.app, self.names, self.any_ip = app, set(names), any_ip

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            host = headers.get("host")
            message = None
            if not host_allowed(host, self.names, self.any_ip):
                message = (f"Host header {host!r} is not allowed: the server answers only to "
                           "this machine's names (DNS rebinding protection)")
            else:
                origin = headers.get("origin")
                if origin is not None and not self._origin_ok(origin):
                    message = f"Origin {origin!r} is not allowed: use the page this server serves"
            if message is not None:
                body = json.dumps({"error": message}).encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _origin_ok(self, origin: str) -> bool:
        scheme, sep, rest = origin.partition("://")
        return bool(sep) and scheme in ("http", "https") and \
            host_allowed(rest.split("/")[0], self.names, self.any_ip)


class SecurityHeaders:
    """nosniff, no framing, no referrer, no caching of API answers."""

    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"referrer-policy", b"no-referrer")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                extra = list(self.HEADERS) + ([(b"cache-control", b"no-store")] if api else [])
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- serving ----------------------------------------------------------------------------------

def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port); one-line errors."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise NdcoreError(f"--host {host!r}: cannot resolve it ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise NdcoreError(f"cannot listen on {host}:{port} ({e.strerror}); give another "
                          "--port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = host.strip("[]")
    ip = _ip(shown)
    if ip is not None and ip.is_unspecified:
        shown = "127.0.0.1" if ip.version == 4 else "::1"
        ip = _ip(shown)
    if ip is not None and ip.version == 6:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def _uvicorn_server(app, max_connections: int):
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                            limit_concurrency=max_connections, timeout_keep_alive=5)
    return uvicorn.Server(config)


def start_server(painter: Painter, host: str = "127.0.0.1", port: int = 0, *,
                 max_pending: int = 8, max_connections: int = 64):
    """Serve ``painter`` from a background thread (tests, benchmarks); returns
    (url, stop) where ``stop()`` shuts the server down."""
    sock = bind(host, port)
    server = _uvicorn_server(create_app(painter, bind_host=host, max_pending=max_pending),
                             max_connections)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise NdcoreError("the paint server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    return url_of(sock, host), stop


def serve(run_dir, layer: Optional[str] = None, host: str = "127.0.0.1", port: int = 8765,
          device: str = "cpu", max_pending: int = 8, max_connections: int = 64,
          threads: Optional[int] = 1, announce=print) -> None:
    """Load the run, print the page's URL and serve until interrupted. ``threads``: torch's
    CPU threads (an edit is one sample: one thread answers fastest, and stays fast when the
    other cores are busy); None leaves torch's default."""
    if threads:
        torch.set_num_threads(threads)
    painter = Painter(run_dir, layer, device)
    sock = bind(host, port)
    server = _uvicorn_server(create_app(painter, bind_host=host, max_pending=max_pending),
                             max_connections)
    announce(url_of(sock, host), painter)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        painter.run.close()  # e.g. a segmenter's worker process


def encode_request(seed: int, mode: str, concept: Optional[str], region: torch.Tensor,
                   k: Optional[int] = None, units: Optional[List[int]] = None) -> Dict:
    """The body of POST /api/edit for a region mask (what the page sends)."""
    body = {"seed": seed, "mode": mode, "region": encode_mask(region)}
    if concept is not None:
        body["concept"] = concept
    if k is not None:
        body["k"] = k
    if units is not None:
        body["units"] = units
    return body
