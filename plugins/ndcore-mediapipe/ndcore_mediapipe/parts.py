"""Face parts from mediapipe's landmarks: polygons from mediapipe's own edge sets, filled, and
composed into label planes. Pure numpy; runs in ndcore's environment (the worker only finds
the landmarks and the person mask).

Label planes (the labels of one plane never overlap; planes do, like Broden's object and part
planes):

=====  ==========  ====================================================================
plane  category    labels, highest priority first
=====  ==========  ====================================================================
0      region      face (the face oval and every part) > hair (approx.) > background
1      part        mouth interior > lips > eyes > eyebrows > nose > skin
2      part        irises (the iris circle, clipped to the eye opening)
=====  ==========  ====================================================================

Why three planes: an iris lies inside an eye, and every part inside the face. In one plane,
"eyes" would have to mean "eye minus iris" and "face" could not exist at all; a unit that
fires on the whole eye would then score badly against both. Separate planes keep each label's
natural extent; within a plane a fixed priority settles the few pixels two polygons share
(e.g. the nose polygon's top and the inner eye corners).

Why these rules:

- *Rings.* FACEMESH_LIPS is two cycles (outer and inner lip line: lips = outer minus inner,
  mouth interior = inner), the eyes and the oval are one cycle each, an eyebrow is two open
  lines (upper and lower edge) that are joined end to end, and FACEMESH_NOSE is a graph (the
  bridge line plus the outline of the tip and wings), whose region is the convex hull of its
  points: a narrow triangle along the bridge widening to the wings.
- *Iris.* A circle around landmark 468 (right) / 473 (left), with the mean distance to the four
  iris points as radius, kept only inside the eye opening (the lids cover the rest).
- *Hair (approx.).* mediapipe 0.10.21 ships no hair model. Hair is the selfie segmenter's
  person mask outside the face, above the chin (landmark 152): it includes the forehead above
  the oval (the oval stops mid-forehead), hats, and sometimes background the person mask took
  in. Below the chin (neck, clothes) the person mask gets no label.
- *Background.* Neither the person mask nor the face.
- *Resolution.* Everything is drawn at the upscaled resolution (k times the image's), then
  each image pixel takes the label covering most of its k x k block (ties: higher priority),
  so labels come back at the generated image's own resolution.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

CATEGORIES = ["region", "part"]
# label number -> (name, category); order = label numbers 1..
LABELS: List[Tuple[str, str]] = [
    ("face", "region"),
    ("hair (approx.)", "region"),
    ("background", "region"),
    ("skin", "part"),
    ("nose", "part"),
    ("eyebrows", "part"),
    ("eyes", "part"),
    ("lips", "part"),
    ("mouth interior", "part"),
    ("irises", "part"),
]
NUMBER = {name: i + 1 for i, (name, _) in enumerate(LABELS)}
# the labels of each plane, highest priority first, and the plane's category index
PLANES: List[Tuple[List[str], int]] = [
    (["face", "hair (approx.)", "background"], 0),
    (["mouth interior", "lips", "eyes", "eyebrows", "nose", "skin"], 1),
    (["irises"], 1),
]
PLANE_CATEGORIES = [cat for _, cat in PLANES]
CHIN = 152
PERSON_THRESHOLD = 128  # the selfie mask's probability 0.5, on its uint8 scale


def vocabulary():
    """The segmenter's vocabulary: labels 1..10 in two categories."""
    from ndcore.plugin_api import Vocabulary

    names = ["-"] + [n for n, _ in LABELS]
    cats = [[]] + [[c] for _, c in LABELS]
    primary = np.asarray([-1] + [CATEGORIES.index(c) for _, c in LABELS], dtype=np.int64)
    coverage = [{}] + [{c: 1.0} for _, c in LABELS]
    return Vocabulary(categories=list(CATEGORIES), label_names=names, label_categories=cats,
                      primary=primary, coverage=coverage)


# -- rings from edge sets -------------------------------------------------------------------


def _components(edges: Sequence[Sequence[int]]) -> List[Dict[int, List[int]]]:
    adjacency: Dict[int, List[int]] = defaultdict(list)
    for a, b in edges:
        adjacency[int(a)].append(int(b))
        adjacency[int(b)].append(int(a))
    seen, comps = set(), []
    for start in sorted(adjacency):
        if start in seen:
            continue
        stack, comp = [start], {}
        seen.add(start)
        while stack:
            v = stack.pop()
            comp[v] = adjacency[v]
            for w in adjacency[v]:
                if w not in seen:
                    seen.add(w)
                    stack.append(w)
        comps.append(comp)
    return comps


def _walk(comp: Dict[int, List[int]], start: int) -> List[int]:
    """The vertices of a cycle or a path, in order along it, from ``start``."""
    order, prev, v = [start], None, start
    while True:
        nxt = [w for w in comp[v] if w != prev]
        if not nxt or nxt[0] == start:
            return order
        prev, v = v, nxt[0]
        order.append(v)


@dataclass
class Outline:
    """An edge set turned into polygons: ``rings`` (closed cycles), ``paths`` (open lines joined
    end to end into one ring, per face) or ``hull`` (any other graph: its convex hull)."""

    name: str
    rings: List[List[int]] = field(default_factory=list)
    paths: List[List[int]] = field(default_factory=list)
    hull: List[int] = field(default_factory=list)

    @classmethod
    def from_edges(cls, name: str, edges: Sequence[Sequence[int]]) -> "Outline":
        if not edges:
            raise ValueError(f"edge set {name} is empty")
        comps = _components(edges)
        degrees = [sorted(len(n) for n in c.values()) for c in comps]
        if all(set(d) == {2} for d in degrees):
            return cls(name, rings=[_walk(c, min(c)) for c in comps])
        if all(d.count(1) == 2 and set(d) <= {1, 2} for d in degrees):
            return cls(name, paths=[_walk(c, min(v for v in c if len(c[v]) == 1))
                                    for c in comps])
        return cls(name, hull=sorted({v for c in comps for v in c}))

    def polygons(self, points: np.ndarray) -> List[np.ndarray]:
        """Polygons [n, 2] (x, y) of this outline on one face's landmarks ``points``."""
        if self.rings:
            return [points[r, :2] for r in self.rings]
        if self.paths:
            return [points[join_paths(self.paths, points), :2]]
        return [convex_hull(points[self.hull, :2])]


def join_paths(paths: List[List[int]], points: np.ndarray) -> List[int]:
    """Open lines -> one ring: each next line starts at the free end nearest the current end."""
    ring = list(paths[0])
    rest = [list(p) for p in paths[1:]]
    while rest:
        end = points[ring[-1], :2]
        ends = [(float(np.linalg.norm(points[p[0], :2] - end)), i, False)
                for i, p in enumerate(rest)]
        ends += [(float(np.linalg.norm(points[p[-1], :2] - end)), i, True)
                 for i, p in enumerate(rest)]
        best = min(ends)
        _, i, flip = best
        path = rest.pop(i)
        ring.extend(reversed(path) if flip else path)
    return ring


def convex_hull(xy: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain; [m, 2] counter-clockwise (in y-down image coordinates: any)."""
    pts = sorted(set(map(tuple, np.asarray(xy, dtype=np.float64).tolist())))
    if len(pts) < 3:
        return np.asarray(pts, dtype=np.float64).reshape(-1, 2)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


def polygon_area(xy: np.ndarray) -> float:
    x, y = np.asarray(xy, dtype=np.float64).T
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


# -- filling -------------------------------------------------------------------------------


def fill(polygons: Sequence[np.ndarray], shape: Tuple[int, int]) -> np.ndarray:
    """bool [h, w]: pixels whose centre (x + 0.5, y + 0.5) is inside the polygons (even-odd
    rule over all of them together). Coordinates are pixels: (0, 0) is the top-left corner."""
    h, w = shape
    toggles = np.zeros((h, w + 1), dtype=np.int32)
    for poly in polygons:
        poly = np.asarray(poly, dtype=np.float64)
        if len(poly) < 3:
            continue
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
        # rows whose centre line y + 0.5 crosses each edge (half-open: lo <= yc < hi)
        r0 = np.clip(np.ceil(lo - 0.5), 0, h).astype(np.int64)
        r1 = np.clip(np.ceil(hi - 0.5), 0, h).astype(np.int64)
        counts = r1 - r0
        if counts.sum() == 0:
            continue
        edge = np.repeat(np.arange(len(poly)), counts)
        rows = np.concatenate([np.arange(a, b) for a, b in zip(r0, r1) if b > a])
        yc = rows + 0.5
        t = (yc - y0[edge]) / (y1[edge] - y0[edge])
        xc = x0[edge] + t * (x1[edge] - x0[edge])
        cols = np.clip(np.ceil(xc - 0.5), 0, w).astype(np.int64)  # first centre at or right of x
        np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles, axis=1)[:, :w] & 1).astype(bool)


def disc(center: Sequence[float], radius: float, shape: Tuple[int, int]) -> np.ndarray:
    """bool [h, w]: pixels whose centre is within ``radius`` of ``center`` (x, y)."""
    h, w = shape
    yy, xx = np.ogrid[0:h, 0:w]
    return (xx + 0.5 - center[0]) ** 2 + (yy + 0.5 - center[1]) ** 2 <= radius ** 2


def pool_mode(plane: np.ndarray, k: int, order: Sequence[int]) -> np.ndarray:
    """[h*k, w*k] labels -> [h, w]: per k x k block the label covering most of it; ties go to
    the label earliest in ``order`` (0, no label, loses every tie)."""
    if k == 1:
        return plane
    hk, wk = plane.shape
    h, w = hk // k, wk // k
    values = np.asarray([0, *order], dtype=np.int64)        # rank r -> label
    rank = np.zeros(int(values.max()) + 1, dtype=np.int64)
    rank[values] = np.arange(len(values))
    n = len(values)
    block = (np.arange(hk)[:, None] // k) * w + np.arange(wk)[None, :] // k
    counts = np.bincount((block * n + rank[plane]).ravel(), minlength=h * w * n)
    counts = counts.reshape(h * w, n)
    # most pixels first; among equals, the earliest in ``order`` (rank 1), and 0 last
    tie = np.zeros(n, dtype=np.int64)
    tie[1:] = np.arange(n - 1, 0, -1)
    best = np.argmax(counts * (n + 1) + tie, axis=1)
    return values[best].reshape(h, w).astype(plane.dtype)


# -- one face -------------------------------------------------------------------------------


@dataclass
class FaceGeometry:
    """The masks of one face at the upscaled resolution (for tests and figures)."""

    masks: Dict[str, np.ndarray]
    iris_centers: Dict[str, Tuple[float, float]]
    iris_radii: Dict[str, float]
    chin_y: float


class PartMaker:
    """Builds the label planes of a face from its landmarks and person mask, using the edge
    sets and iris points the worker's mediapipe reported in its hello."""

    def __init__(self, hello: Dict) -> None:
        edges = hello["edges"]
        self.outlines = {name: Outline.from_edges(name, e) for name, e in edges.items()
                         if not name.endswith("_iris")}
        self.irises = {side: (int(c), [int(p) for p in ring])
                       for side, (c, ring) in hello["irises"].items()}
        lips = self.outlines["lips"]
        if len(lips.rings) != 2:
            raise ValueError(f"FACEMESH_LIPS gave {len(lips.rings)} rings, expected 2 "
                             "(outer and inner lip line)")

    def geometry(self, points: np.ndarray, person: np.ndarray) -> FaceGeometry:
        """Masks at the upscaled resolution ``person.shape`` of one face's landmarks (pixels
        of the upscaled image)."""
        shape = person.shape
        poly = {name: o.polygons(points) for name, o in self.outlines.items()}
        lip_rings = sorted(poly["lips"], key=polygon_area)  # inner (smaller) first
        m = {
            "oval": fill(poly["face_oval"], shape),
            "mouth interior": fill(lip_rings[:1], shape),
            "lips_outer": fill(lip_rings[1:], shape),
            "eye_left": fill(poly["left_eye"], shape),
            "eye_right": fill(poly["right_eye"], shape),
            "eyebrows": fill(poly["left_eyebrow"], shape) | fill(poly["right_eyebrow"], shape),
            "nose": fill(poly["nose"], shape),
            "person": person >= PERSON_THRESHOLD,
        }
        m["lips"] = m["lips_outer"] & ~m["mouth interior"]
        m["eyes"] = m["eye_left"] | m["eye_right"]
        centers, radii = {}, {}
        irises = np.zeros(shape, dtype=bool)
        for side, (c, ring) in self.irises.items():
            center = points[c, :2]
            radius = float(np.mean(np.linalg.norm(points[ring, :2] - center, axis=1)))
            centers[side], radii[side] = (float(center[0]), float(center[1])), radius
            irises |= disc(center, radius, shape) & m[f"eye_{side}"]
        m["irises"] = irises
        parts = m["mouth interior"] | m["lips_outer"] | m["eyes"] | m["eyebrows"] | m["nose"]
        m["face"] = m["oval"] | parts
        m["skin"] = m["oval"] & ~parts
        chin_y = float(points[CHIN, 1])
        above_chin = (np.arange(shape[0]) + 0.5 < chin_y)[:, None]
        m["hair (approx.)"] = m["person"] & ~m["face"] & above_chin
        m["background"] = ~m["person"] & ~m["face"]
        return FaceGeometry(m, centers, radii, chin_y)

    def planes(self, points: np.ndarray, person: np.ndarray, k: int) -> np.ndarray:
        """int16 [3, h, w] label planes at the image's resolution (upscaled size / k)."""
        return compose(self.geometry(points, person).masks, k)


def compose(masks: Dict[str, np.ndarray], k: int) -> np.ndarray:
    """Label masks at the upscaled resolution -> int16 [3, h, w] label planes: in each plane
    the labels painted by priority (:data:`PLANES`), then pooled by k (:func:`pool_mode`)."""
    hk, wk = next(iter(masks.values())).shape
    out = np.zeros((len(PLANES), hk // k, wk // k), dtype=np.int16)
    for p, (names, _) in enumerate(PLANES):
        plane = np.zeros((hk, wk), dtype=np.int16)
        for name in reversed(names):  # paint the lowest priority first
            plane[masks[name]] = NUMBER[name]
        out[p] = pool_mode(plane, k, [NUMBER[n] for n in names])
    return out
