"""Random rotations of a layer's units, as in NetDissect (docs/method.md section 13).

A Haar-random rotation ``Q`` of the C units, and its fractional powers ``Q^alpha`` that move
from the identity (alpha = 0) to ``Q`` (alpha = 1) along the shortest path: in the real Schur
form ``Q = W T W^T`` (T block diagonal: 2x2 rotations by angles theta, and 1x1 blocks +1),
``Q^alpha = W T_alpha W^T`` with every angle multiplied by alpha. The rotated unit ``i`` is
``sum_j R[i, j] * unit_j`` at every position, before thresholds.

Everything here is float64 numpy; a derived layer's maps are rotated in float32 by the engine
(:func:`rotate_maps`). A derived layer is named ``LAYER@rot<alpha>`` (:func:`derived_name`).
"""

from __future__ import annotations

import math
import re
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

SEPARATOR = "@rot"
_DERIVED = re.compile(r"^(?P<layer>.+)@rot(?P<alpha>[0-9.eE+-]+)$")
# Eigenvalues of (Q + Q^T) / 2 closer than this are one cluster (copies of one cos(theta));
# a Haar rotation's distinct angles are this close with negligible probability.
_CLUSTER_TOL = 1e-10
# |sin(theta)| below this (relative): the vector is its own image (+1) or its negation (-1).
_SIN_TOL = 1e-13


def format_alpha(alpha: float) -> str:
    """0.0 -> '0', 1.0 -> '1', 0.25 -> '0.25' (the shortest text that reads back as alpha)."""
    text = repr(float(alpha))
    return text[:-2] if text.endswith(".0") else text


def derived_name(layer: str, alpha: float) -> str:
    """The derived layer of ``layer`` rotated by ``Q^alpha``: ``layer4@rot0.5``."""
    return f"{layer}{SEPARATOR}{format_alpha(alpha)}"


def parse_derived(name: str) -> Optional[Tuple[str, float]]:
    """``'layer4@rot0.5'`` -> ``('layer4', 0.5)``; None for a layer that is not derived."""
    m = _DERIVED.match(name)
    if m is None:
        return None
    try:
        return m.group("layer"), float(m.group("alpha"))
    except ValueError:
        return None


def haar_rotation(n: int, seed: int) -> np.ndarray:
    """A Haar-random rotation of R^n (float64 [n, n], orthogonal, determinant +1), seeded.

    NetDissect's construction: ``Q, R = qr(G)`` of a standard Gaussian ``G`` drawn by
    ``numpy.random.default_rng(seed)``; Q's columns times ``sign(diag(R))`` (Haar measure on
    O(n)); the first row negated where the determinant is -1.
    """
    if n < 1:
        raise ValueError(f"a rotation needs n >= 1 dimensions, got {n}")
    g = np.random.default_rng(seed).standard_normal((n, n))
    q, r = np.linalg.qr(g)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q = q * signs[None, :]
    if np.linalg.det(q) < 0:
        q[0, :] = -q[0, :]
    return q


def schur_blocks(q: np.ndarray) -> Tuple[List[Tuple[np.ndarray, float]], np.ndarray]:
    """The real Schur form of a rotation ``q``: ([(P [n, 2], theta)], F [n, k]).

    Each plane P (orthonormal columns p, r) is invariant, and q turns it by theta in
    (-pi, pi]: ``q p = cos(theta) p + sin(theta) r``. F's columns span the vectors q fixes.
    Together they are an orthonormal basis of R^n. Eigenvalues -1 come in pairs (determinant
    +1) and make planes with theta = pi.

    Computed from the eigenvectors of the symmetric part ``(q + q^T) / 2`` (eigenvalues
    cos(theta), each eigenspace invariant under q), each eigenspace split into planes by the
    antisymmetric part ``(q - q^T) / 2`` (which is sin(theta) times a quarter turn there).
    """
    q = np.asarray(q, dtype=np.float64)
    n = q.shape[0]
    sym = (q + q.T) / 2
    anti = (q - q.T) / 2
    values, vectors = np.linalg.eigh(sym)
    planes: List[Tuple[np.ndarray, float]] = []
    fixed: List[np.ndarray] = []
    flipped: List[np.ndarray] = []
    start = 0
    while start < n:
        end = start + 1
        while end < n and values[end] - values[end - 1] <= _CLUSTER_TOL:
            end += 1
        basis = vectors[:, start:end]
        while basis.shape[1]:
            w = basis[:, 0]
            u = basis @ (basis.T @ (anti @ w))  # A w, kept inside the eigenspace
            u -= w * (w @ u)
            norm = float(np.linalg.norm(u))
            if norm > _SIN_TOL:
                r = u / norm
                plane = np.stack([w, r], axis=1)
                planes.append((plane, math.atan2(float(r @ q @ w), float(w @ q @ w))))
                taken = plane
            else:  # q w = +-w
                (fixed if float(w @ q @ w) > 0 else flipped).append(w)
                taken = w[:, None]
            basis = _complement(basis, taken)
        start = end
    if len(flipped) % 2:
        raise ValueError("not a rotation: an odd number of eigenvalues -1 (determinant -1)")
    for k in range(0, len(flipped), 2):
        w = flipped[k]
        r = flipped[k + 1] - w * (w @ flipped[k + 1])
        planes.append((np.stack([w, r / np.linalg.norm(r)], axis=1), math.pi))
    fixed_matrix = np.stack(fixed, axis=1) if fixed else np.zeros((n, 0))
    return planes, fixed_matrix


def _complement(basis: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """An orthonormal basis of span(basis) orthogonal to ``taken`` (in that span)."""
    left = basis.shape[1] - taken.shape[1]
    if left <= 0:
        return basis[:, :0]
    rest = basis - taken @ (taken.T @ basis)
    u, _, _ = np.linalg.svd(rest, full_matrices=False)
    return u[:, :left]


def fractional_power(q: np.ndarray, alpha: float) -> np.ndarray:
    """``q^alpha`` of a rotation q (float64): every angle of its real Schur form times alpha.

    ``alpha = 0`` is the identity exactly; ``alpha = 1`` is q (to rounding);
    ``q^a @ q^b = q^(a + b)``.
    """
    return powers(q, [alpha])[0]


def powers(q: np.ndarray, alphas: Sequence[float]) -> List[np.ndarray]:
    """``q^alpha`` for each alpha (:func:`fractional_power`), from one Schur form of q."""
    q = np.asarray(q, dtype=np.float64)
    n = q.shape[0]
    blocks = schur_blocks(q) if any(a != 0 for a in alphas) else None
    return [power_from_blocks(n, blocks, a) for a in alphas]


def power_from_blocks(n: int, blocks, alpha: float) -> np.ndarray:
    """``q^alpha`` from q's real Schur form (:func:`schur_blocks`); alpha 0: the identity."""
    if alpha == 0:
        return np.eye(n)
    planes, fixed = blocks
    if not planes:
        return fixed @ fixed.T
    # W = [p_1 r_1 p_2 r_2 ...], and (W T_alpha)'s columns: p c + r s, -p s + r c
    p = np.stack([plane[:, 0] for plane, _ in planes], axis=1)
    r = np.stack([plane[:, 1] for plane, _ in planes], axis=1)
    angles = alpha * np.array([theta for _, theta in planes])
    c, s = np.cos(angles), np.sin(angles)
    return fixed @ fixed.T + (p * c + r * s) @ p.T + (r * c - p * s) @ r.T


def rotations(n: int, alphas: Sequence[float], seed: int) -> List[np.ndarray]:
    """``Q^alpha`` for each alpha of one Haar rotation Q of n units drawn with ``seed``."""
    return powers(haar_rotation(n, seed), alphas)


def rotate_maps(maps: torch.Tensor, rotation: Optional[torch.Tensor]) -> torch.Tensor:
    """Rotated unit maps: ``R @ maps`` over the channel axis of float32 [B, C, h, w] maps
    (a float32 [C, C] rotation on their device). None (alpha 0): the maps themselves."""
    if rotation is None:
        return maps
    b, c, h, w = maps.shape
    return torch.matmul(rotation, maps.reshape(b, c, h * w)).reshape(b, c, h, w)
