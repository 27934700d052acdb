"""The mediapipe worker: runs in its own environment (numpy<2, mediapipe 0.10.21), never in
ndcore's. ``ndcore_mediapipe.client`` starts it as ``PYTHON -I worker.py`` and talks to it over
its stdin / stdout.

This file is also the protocol's one definition: the client imports the framing functions from
it. Its module level therefore imports only the standard library; numpy and mediapipe are
imported in :func:`main`, inside the worker.

Protocol (every message is one frame, both ways)::

    frame   = 4-byte little-endian header length, the header (UTF-8 JSON), the payload
    payload = header["nbytes"] raw bytes (0 when absent)

worker -> client, once at start:
    {"op": "hello", "protocol": 1, "mediapipe": "0.10.21", "numpy": ..., "python": ...,
     "num_landmarks": 478, "edges": {"lips": [[a, b], ...], "left_eye": ..., ...},
     "irises": {"left": [473, [474, 475, 476, 477]], "right": [468, [469, ...]]}}
    or {"op": "error", "error": "one line"} and exit (status 3) when mediapipe cannot start.

client -> worker:
    {"op": "segment", "shape": [B, H, W, 3], "size": S, "nbytes": B*H*W*3}
        + uint8 RGB images, C order
    {"op": "close"}                                   (or end of input): exit 0

worker -> client, one answer per request:
    {"op": "result", "count": B, "found": [bool] * B, "tries": [int] * B,
     "scale": k, "landmarks": [B, 478, 3], "mask": [B, H*k, W*k], "nbytes": ...}
        + float32 landmarks (x, y in pixels of the upscaled, unpadded image; z in the same
          unit; zeros where no face was found), then uint8 person masks (selfie segmentation,
          probability * 255, at the upscaled size)
    {"op": "error", "error": "one line"}              (the worker stays up for the next request)

Images are upscaled (bicubic) by the integer factor k = ceil(S / max(H, W)) (k = 1 when the
image is already S px or larger), so that labels pooled back by k land exactly on the image's
own pixels. When the face mesh finds no face, the image is padded with grey (a quarter of its side
on every edge) and tried once more: the face detector expects a face smaller than the frame,
and generated faces fill it.
"""

import json
import os
import struct
import sys

PROTOCOL = 1
_LEN = struct.Struct("<I")
MAX_HEADER = 1 << 24

# the retry after a miss: padding as a fraction of the upscaled image's longer side, grey fill
# (a wider padding, 0.5, finds a tiny false face in a garbage sample of the DCGAN)
PADDINGS = (0.25,)
PAD_VALUE = 128

# mediapipe's edge sets used for the part polygons (names in face_mesh_connections)
EDGE_SETS = {
    "lips": "FACEMESH_LIPS",
    "left_eye": "FACEMESH_LEFT_EYE",
    "right_eye": "FACEMESH_RIGHT_EYE",
    "left_eyebrow": "FACEMESH_LEFT_EYEBROW",
    "right_eyebrow": "FACEMESH_RIGHT_EYEBROW",
    "face_oval": "FACEMESH_FACE_OVAL",
    "nose": "FACEMESH_NOSE",
    "left_iris": "FACEMESH_LEFT_IRIS",
    "right_iris": "FACEMESH_RIGHT_IRIS",
}


class ProtocolError(Exception):
    """The other side sent something that is not a frame, or went away mid-frame."""


def _read_exact(stream, n):
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None if left == n and not chunks else b"".join(chunks)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(stream):
    """(header dict, payload bytes), or None at a clean end of the stream."""
    raw = _read_exact(stream, _LEN.size)
    if raw is None:
        return None
    if len(raw) != _LEN.size:
        raise ProtocolError("the stream ended inside a frame's length")
    (size,) = _LEN.unpack(raw)
    if size > MAX_HEADER:
        raise ProtocolError(f"a frame header of {size} bytes: not this protocol")
    text = _read_exact(stream, size)
    if text is None or len(text) != size:
        raise ProtocolError("the stream ended inside a frame header")
    try:
        header = json.loads(text.decode("utf-8"))
    except ValueError as e:
        raise ProtocolError(f"a frame header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise ProtocolError("a frame header is not a JSON object")
    nbytes = int(header.get("nbytes", 0))
    payload = _read_exact(stream, nbytes) if nbytes else b""
    if nbytes and (payload is None or len(payload) != nbytes):
        raise ProtocolError("the stream ended inside a frame payload")
    return header, payload


def write_message(stream, header, *payloads):
    """One frame: ``header`` (a dict, JSON) and the concatenated ``payloads`` (bytes-like)."""
    views = [memoryview(p).cast("B") for p in payloads]
    header = dict(header, nbytes=sum(v.nbytes for v in views))
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    views = [memoryview(_LEN.pack(len(text))), memoryview(text)] + views
    for v in views:
        while v.nbytes:  # a raw (unbuffered) stream may take only part of it
            written = stream.write(v)
            v = v[written if written is not None else v.nbytes:]
    stream.flush()


def one_line(exc):
    text = str(exc).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


# -- inside the worker ----------------------------------------------------------------------


class FaceParts:
    """mediapipe's face mesh (478 landmarks) and selfie segmentation, one image at a time."""

    def __init__(self):
        import mediapipe as mp
        import numpy as np
        import cv2
        from mediapipe.python.solutions import face_mesh_connections as fmc

        self.np, self.cv2, self.mp = np, cv2, mp
        self.mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=0.5)
        self.selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        self.edges = {name: sorted([int(a), int(b)] for a, b in getattr(fmc, attr))
                      for name, attr in EDGE_SETS.items()}
        self.num_landmarks = 478

    def hello(self):
        return {"op": "hello", "protocol": PROTOCOL, "mediapipe": self.mp.__version__,
                "numpy": self.np.__version__, "python": sys.version.split()[0],
                "num_landmarks": self.num_landmarks, "edges": self.edges,
                "irises": {"right": [468, [469, 470, 471, 472]],
                           "left": [473, [474, 475, 476, 477]]},
                "paddings": list(PADDINGS)}

    def landmarks(self, image):
        """(float32 [478, 3] in pixels of ``image``, tries) or (None, tries)."""
        np, cv2 = self.np, self.cv2
        h, w = image.shape[:2]
        for tries, frac in enumerate((0.0,) + PADDINGS, start=1):
            pad = int(round(frac * max(h, w)))
            x = image if pad == 0 else cv2.copyMakeBorder(
                image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
            found = self.mesh.process(x).multi_face_landmarks
            if found:
                pts = np.array([(p.x, p.y, p.z) for p in found[0].landmark], np.float32)
                if pts.shape[0] != self.num_landmarks:
                    raise RuntimeError(f"the face mesh gave {pts.shape[0]} landmarks, not "
                                       f"{self.num_landmarks} (refine_landmarks is off?)")
                ph, pw = x.shape[:2]
                pts[:, 0] = pts[:, 0] * pw - pad
                pts[:, 1] = pts[:, 1] * ph - pad
                pts[:, 2] = pts[:, 2] * pw
                return pts, tries
        return None, len(PADDINGS) + 1

    def segment(self, header, payload):
        np, cv2 = self.np, self.cv2
        shape = header.get("shape")
        if not (isinstance(shape, list) and len(shape) == 4 and shape[3] == 3
                and all(isinstance(s, int) and s > 0 for s in shape)):
            raise ValueError(f"shape {shape!r}: expected [B, H, W, 3]")
        b, h, w, _ = shape
        if len(payload) != b * h * w * 3:
            raise ValueError(f"{len(payload)} bytes of images for shape {shape}")
        size = int(header.get("size", 256))
        k = max(1, -(-size // max(h, w)))
        images = np.frombuffer(payload, np.uint8).reshape(b, h, w, 3)
        marks = np.zeros((b, self.num_landmarks, 3), np.float32)
        masks = np.zeros((b, h * k, w * k), np.uint8)
        found, tries = [], []
        for i in range(b):
            img = np.ascontiguousarray(images[i])
            if k > 1:
                img = cv2.resize(img, (w * k, h * k), interpolation=cv2.INTER_CUBIC)
            pts, t = self.landmarks(img)
            found.append(pts is not None)
            tries.append(t)
            if pts is not None:
                marks[i] = pts
            prob = self.selfie.process(img).segmentation_mask
            masks[i] = np.clip(np.asarray(prob) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return ({"op": "result", "count": b, "found": found, "tries": tries, "scale": k,
                 "landmarks": list(marks.shape), "mask": list(masks.shape)}, marks, masks)


def main():
    # The client reads frames from our stdout: keep it for them, and send anything a library
    # prints (mediapipe's and TF Lite's logs) to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    try:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's to handle
    except (ImportError, ValueError):
        pass
    try:
        parts = FaceParts()
    except Exception as e:
        write_message(out, {"op": "error", "error": one_line(e)})
        return 3
    write_message(out, parts.hello())
    while True:
        try:
            message = read_message(inp)
        except ProtocolError as e:
            print(f"ndcore-mediapipe worker: {e}", file=sys.stderr)
            return 4
        if message is None:
            return 0
        header, payload = message
        op = header.get("op")
        if op == "close":
            return 0
        try:
            if op != "segment":
                raise ValueError(f"unknown request {op!r}")
            answer = parts.segment(header, payload)
        except Exception as e:
            write_message(out, {"op": "error", "error": one_line(e)})
            continue
        write_message(out, *answer)


if __name__ == "__main__":
    try:
        code = main()
    except BrokenPipeError:  # the client went away
        code = 0
    sys.exit(code)
