"""Exact counts for the formula search, from a FormulaData's signatures (docs/formulas.md).

``LabelTables`` (once per data set and candidate list, shared by all units): label sizes |A|,
pairwise |A∩B|, and triples |A∩B∩C| -- a dense n^3 table when small, else rows |A∩B∩·|
tallied on demand and cached. ``UnitCounts`` (per unit): the same over the unit's pixels only,
from its few signatures. Candidates are addressed by their index in the sorted candidate list.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from ndcore.formulas.data import FormulaData
from ndcore.formulas.formula import Formula, evaluate

DENSE_TRIPLES = 8_000_000  # n^3 entries (64 MB) up to which all triples are precomputed
_ROW_CACHE = 20_000        # cached |A∩B∩·| rows when triples are not dense
_CHUNK = 8192              # signatures per dense block when tallying pairs


class LabelTables:
    """Unit-independent counts over all pixels, restricted to the candidate labels."""

    def __init__(self, data: FormulaData, candidates: Sequence[int]) -> None:
        self.cand = np.asarray(candidates, dtype=np.int64)
        n = self.n = len(self.cand)
        col = np.full(data.n_labels, -1, dtype=np.int64)
        col[self.cand] = np.arange(n)
        rows = np.repeat(np.arange(data.n_signatures), np.diff(data.sig_ptr))
        cols = col[data.sig_labels]
        keep = cols >= 0
        self.nnz_row, self.nnz_col = rows[keep], cols[keep]  # sorted by row, then label
        self.ptr = np.searchsorted(self.nnz_row, np.arange(data.n_signatures + 1))
        self.w = data.sig_count.astype(np.float64)
        self.n_sig = data.n_signatures
        self.size = np.bincount(self.nnz_col, weights=self.w[self.nnz_row], minlength=n)
        # per label, its signatures (CSC): used for 'signatures holding A and B'
        order = np.argsort(self.nnz_col, kind="stable")
        self.csc_rows = self.nnz_row[order]
        self.csc_ptr = np.searchsorted(self.nnz_col[order], np.arange(n + 1))
        self.pair = np.zeros((n, n))
        for lo in range(0, self.n_sig, _CHUNK):
            block = self.dense_rows(np.arange(lo, min(lo + _CHUNK, self.n_sig)))
            self.pair += block.T @ (block * self.w[lo:lo + _CHUNK, None])
        self.triple = None
        self._rows: Dict[Tuple[int, int], np.ndarray] = {}
        if n ** 3 <= DENSE_TRIPLES:
            self.triple = np.zeros((n, n, n))
            for a in range(n):
                sig = self.label_sigs(a)
                block = self.dense_rows(sig)
                self.triple[a] = block.T @ (block * self.w[sig, None])

    def label_sigs(self, a: int) -> np.ndarray:
        return self.csc_rows[self.csc_ptr[a]:self.csc_ptr[a + 1]]

    def dense_rows(self, sig: np.ndarray) -> np.ndarray:
        """float64 [len(sig), n]: 1 where the signature holds the candidate."""
        out = np.zeros((len(sig), self.n))
        starts, ends = self.ptr[sig], self.ptr[sig + 1]
        lens = ends - starts
        r = np.repeat(np.arange(len(sig)), lens)
        offsets = starts - np.concatenate([[0], np.cumsum(lens)[:-1]])
        idx = np.repeat(offsets, lens) + np.arange(lens.sum())
        out[r, self.nnz_col[idx]] = 1.0
        return out

    def triple_rows(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """|A∩B∩C| for each pair (a[i], b[i]) and every candidate C: float64 [len(a), n]."""
        if self.triple is not None:
            return self.triple[a, b]
        out = np.empty((len(a), self.n))
        for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
            key = (min(x, y), max(x, y))
            row = self._rows.get(key)
            if row is None:
                sig = np.intersect1d(self.label_sigs(x), self.label_sigs(y), assume_unique=True)
                row = self.w[sig] @ self.dense_rows(sig)
                if len(self._rows) >= _ROW_CACHE:
                    self._rows.clear()
                self._rows[key] = row
            out[i] = row
        return out

    def formula_sigs(self, f: Formula) -> np.ndarray:
        """bool [n_sig]: the signatures inside formula f (labels are candidate indices)."""
        def col(a: int) -> np.ndarray:
            m = np.zeros(self.n_sig, dtype=bool)
            m[self.label_sigs(a)] = True
            return m
        return evaluate(f, col)

    def tally(self, mask: np.ndarray) -> Tuple[float, np.ndarray]:
        """(|G|, |G∩C| for every candidate C) for the signatures in ``mask``."""
        sel = mask[self.nnz_row]
        per_label = np.bincount(self.nnz_col[sel], weights=self.w[self.nnz_row[sel]],
                                minlength=self.n)
        return float(self.w[mask].sum()), per_label


class UnitCounts:
    """Counts over one unit's mask pixels: |U|, |A∩U|, and on demand |A∩B∩U| and |A∩B∩C∩U|."""

    def __init__(self, data: FormulaData, tables: LabelTables, unit: int) -> None:
        sig, cnt = data.unit_rows(unit)
        self.member = tables.dense_rows(sig.astype(np.int64))  # [K, n] 0/1
        self.u = cnt.astype(np.float64)
        self.size = float(self.u.sum())
        self.inter = self.u @ self.member  # |A∩U|
        self.outside = tables.w[sig] - self.u  # per signature: its pixels outside U
        self._member_t = np.ascontiguousarray(self.member.T)  # [n, K]
        # Counts of unit pixels are integers below |U|: exact in float32 while |U| < 2**24
        # (every partial sum is such an integer), and the products run twice as fast.
        exact = np.float32 if self.size < 2 ** 24 else np.float64
        self._m = self.member.astype(exact)
        self._m_t = self._member_t.astype(exact)
        self._uw_t = self._m_t * self.u.astype(exact)[None]  # [n, K]

    def gains(self, b: float, a: np.ndarray) -> Tuple[float, np.ndarray]:
        """Positive gains g+ = max(0, |s∩U| - b |s \\ U|) per signature s: their total, and
        their sums over A∩C for each a and every candidate C [len(a), n] (C = A: over A alone)
        -- docs/formulas.md, phi+ bounds. (Zero for labels that never meet U.)"""
        g = np.maximum(self.u - b * self.outside, 0.0)  # float64: bounds must not round down
        return float(g.sum()), (self._member_t[a] * g[None]) @ self.member

    def pair_rows(self, a: np.ndarray) -> np.ndarray:
        """|A∩C∩U| for each a and every C: [len(a), n]."""
        return (self._uw_t[a] @ self._m).astype(np.float64)

    def triple_rows(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """|A∩B∩C∩U| for each pair (a[i], b[i]) and every C: [len(a), n]."""
        return ((self._uw_t[a] * self._m_t[b]) @ self._m).astype(np.float64)

    def tally(self, f: Formula) -> Tuple[float, np.ndarray]:
        """(|G∩U|, |G∩C∩U| for every C) for formula f (labels are candidate indices)."""
        mask = evaluate(f, lambda a: self.member[:, a] > 0)
        return float(self.u[mask].sum()), self.u[mask] @ self.member[mask]

