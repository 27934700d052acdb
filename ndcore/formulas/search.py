"""Each unit's best formula: optimal (exact branch and bound) or compexp's beam search.

Both run on the same exact counts (ndcore.formulas.tables), so comparing them compares search
strategies. Semantics, tie rule, bounds and their proofs: docs/formulas.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ndcore.formulas.data import FormulaData
from ndcore.formulas.formula import AND, AND_NOT, OR, Formula, FormulaError, format_formula
from ndcore.formulas.tables import LabelTables, UnitCounts

METHODS = ("optimal", "beam")
_SEED = 8  # length-2 formulas whose extensions are tried first, for a good best IoU early
_BATCH_ENTRIES = 1 << 17  # units searched together: about this many length-2 prefixes in all


@dataclass
class FormulaResult:
    unit: int
    formula: str    # '' when no candidate label meets the unit (then iou is 0)
    iou: float
    length: int     # number of labels in the formula
    optimal: bool   # proved best among all formulas up to the length over the candidates
    visited: int    # formulas whose exact IoU was computed


def validate_settings(length: int, method: str, beam: int) -> None:
    """Refuse settings the search cannot take (FormulaError, named as ``ndcore formulas``'s
    options): callers check them before a long pass over the images, and ``search_formulas``
    checks them again."""
    if method not in METHODS:
        raise FormulaError(f"--search {method!r}: unknown formula search "
                           f"(choose from: {', '.join(METHODS)})")
    if length < 1:
        raise FormulaError(f"--length {length}: a formula has at least 1 label")
    if method == "optimal" and length > 3:
        raise FormulaError(f"--length {length}: the optimal search handles formulas up to "
                           f"length 3; use --search beam for longer formulas")
    if beam < 1:
        raise FormulaError(f"--beam {beam}: the beam width must be at least 1")


def search_formulas(data: FormulaData, units: Sequence[int], *, length: int = 3,
                    method: str = "optimal", beam: int = 5,
                    labels: Optional[Sequence[int]] = None,
                    progress: Optional[Callable[[int], None]] = None) -> List[FormulaResult]:
    """One result per unit, in the order given. ``labels``: candidate label numbers (default:
    every label that occurs in the data). ``progress(k)`` is called as k more units finish."""
    validate_settings(length, method, beam)
    for u in units:
        if not 0 <= int(u) < data.n_units:
            raise FormulaError(f"unit {u} does not exist (the layer has {data.n_units} units)")
    if labels is None:
        cand = np.flatnonzero(data.label_sizes() > 0)
        cand = cand[cand > 0]
    else:
        cand = np.unique(np.asarray(list(labels), dtype=np.int64))
        bad = cand[(cand <= 0) | (cand >= data.n_labels)]
        if len(bad):
            raise FormulaError(f"candidate label number {bad[0]} is outside "
                               f"1..{data.n_labels - 1}")
    tables = data.cache.get(("tables", tuple(cand.tolist())))
    if tables is None:
        data.cache.clear()  # one candidate list at a time: bounded memory
        tables = data.cache[("tables", tuple(cand.tolist()))] = LabelTables(data, cand)
    results = []
    step = max(1, _BATCH_ENTRIES // (3 * tables.n ** 2)) if method == "optimal" else 1
    for lo in range(0, len(units), step):
        batch = [int(u) for u in units[lo:lo + step]]
        counts = [UnitCounts(data, tables, u) for u in batch]
        if method == "optimal":  # several units per array operation
            found = _optimal(counts, tables, length)
        else:
            found = [_beam(counts[0], tables, length, beam)]
        for u, (f, iou, visited) in zip(batch, found):
            named = Formula(tuple(int(cand[a]) for a in f.labels), f.ops)
            results.append(FormulaResult(u, format_formula(named, data.label_names), float(iou),
                                         len(f), method == "optimal", int(visited)))
        if progress is not None:
            progress(len(batch))
    return results


# -- the algebra: every extension G OP C of prefixes G, for all candidates C at once ---------

def _extend(unit: UnitCounts, tables: LabelTables, ig: np.ndarray, sg: np.ndarray,
            igc: np.ndarray, sgc: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Given |G∩U|, |G| [q] and |G∩C∩U|, |G∩C| [q, n]: (I, S, IoU) of G OP C, each [q, 3, n]
    with OP in (OR, AND, AND NOT) along axis 1."""
    ig, sg = ig[:, None], sg[:, None]
    inter = np.stack([ig + unit.inter[None] - igc, igc, ig - igc], axis=1)
    size = np.stack([sg + tables.size[None] - sgc, sgc, sg - sgc], axis=1)
    return inter, size, inter / (unit.size + size - inter)  # |F∪U| >= |U| > 0


def _pair_prefix_rows(unit: UnitCounts, tables: LabelTables, ia: np.ndarray, ib: np.ndarray,
                      a: np.ndarray, op: np.ndarray,
                      b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """|G∩C∩U| and |G∩C| [q, n] for the length-2 prefixes G = a op b, by inclusion-exclusion
    from the exact pair and triple counts (ia, ib: the rows |A∩C∩U|, |B∩C∩U|)."""
    it, t = unit.triple_rows(a, b), tables.triple_rows(a, b)
    sa = tables.pair[a]
    o = op[:, None]
    igc = np.where(o == OR, ia + ib - it, np.where(o == AND, it, ia - it))
    sgc = np.where(o == OR, sa + tables.pair[b] - t, np.where(o == AND, t, sa - t))
    return igc, sgc


# -- optimal ------------------------------------------------------------------------------

def _optimal(units: List[UnitCounts], tables: LabelTables,
             length: int) -> List[Tuple[Formula, float, int]]:
    """Branch and bound over all formulas up to ``length`` (<= 3), for several units at once
    (every array below has the units as its first axis: one numpy call serves them all; only
    the products with a unit's own signatures run unit by unit). See docs/formulas.md.

    Exact reductions (proved there): a label that never meets U appears only negated; a
    repeated label, and all but the smallest-key member of each group of equivalent formulas
    (A OR B = B OR A, (A AND NOT B) AND C = (A AND C) AND NOT B, ...), are skipped. Lengths 1-2
    are computed exactly; then the extensions of each unit's best few length-2 formulas (a
    good best IoU b early); then every length-2 prefix G whose bounds say that some G OP C may
    reach b is expanded (all its allowed G OP C, exactly)."""
    n, nu = tables.n, len(units)
    usize = np.array([u.size for u in units])
    uinter = np.stack([u.inter for u in units])  # |A∩U| [units, n]
    in_p = uinter > 0  # P: the labels meeting U
    best = _Best(nu)
    visited = in_p.sum(axis=1)
    cc = np.arange(n)
    # length 1, ordered by label: at equal IoU the first is the smallest key
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 only where masked (U empty)
        iou1 = np.where(in_p, uinter / (usize[:, None] + tables.size - uinter), -1.0)
    if length == 1:
        best.offer(iou1, lambda i: Formula((i,)))
        return best.results(visited)
    # length 2: G = A op B for every A, B [units, n, 3, n], flat order = key order
    i2 = np.zeros((nu, n, n))  # |A∩B∩U| (0 where A is not in P)
    for u, row in enumerate(in_p):
        p = np.flatnonzero(row)
        i2[u, p] = units[u].pair_rows(p)
    ia, ic = uinter[:, :, None], uinter[:, None, :]
    sa, sc = tables.size[:, None], tables.size[None, :]
    inter = np.stack([ia + ic - i2, i2, ia - i2], axis=2)
    size = np.broadcast_to(np.stack([sa + sc - tables.pair, tables.pair, sa - tables.pair],
                                    axis=1), inter.shape)
    valid = np.empty(inter.shape, dtype=bool)
    valid[:, :, OR] = in_p[:, :, None] & in_p[:, None, :] & (cc[None, :] > cc[:, None])
    valid[:, :, AND] = valid[:, :, OR]  # A < B, both in P: A OR B = B OR A
    valid[:, :, AND_NOT] = in_p[:, :, None] & (cc[None, :] != cc[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(valid, inter / (usize[:, None, None, None] + size - inter), -1.0)
    visited += valid.sum(axis=(1, 2, 3))
    flat = iou.reshape(nu, -1)
    best.offer(np.concatenate([iou1, flat], axis=1),  # length 1 first: shorter wins ties
               lambda i: Formula((i,)) if i < n else
               Formula(((i - n) // (3 * n), (i - n) % n), ((i - n) // n % 3,)))
    if length == 2:
        return best.results(visited)

    todo = valid.reshape(nu, -1).copy()  # prefixes not yet expanded
    inter, size = inter.reshape(nu, -1), size.reshape(nu, -1)
    out_size = tables.size - uinter  # |C \ U| [units, n]

    def expand(ru: np.ndarray, rg: np.ndarray, or_ok: np.ndarray, and_ok: np.ndarray,
               not_ok: np.ndarray) -> None:
        """Exact IoU of the allowed extensions of the prefixes rg of units ru."""
        if not len(rg):
            return
        order = np.lexsort((rg, ru))  # by unit, then key: the first maximum is the smallest key
        ru, rg, or_ok, and_ok, not_ok = (x[order] for x in (ru, rg, or_ok, and_ok, not_ok))
        ta, to, tb = rg // (3 * n), rg // n % 3, rg % n
        # |G∩C∩U|, |G∩C| by inclusion-exclusion:
        # A∩C - A∩B∩C + B∩C (OR), A∩B∩C (AND), A∩C - A∩B∩C (AND NOT)
        bounds = np.searchsorted(ru, np.arange(nu + 1))
        it = np.empty((len(rg), n))
        for u in np.unique(ru).tolist():
            g = slice(bounds[u], bounds[u + 1])
            it[g] = units[u].triple_rows(ta[g], tb[g])
        tt = tables.triple_rows(ta, tb)
        ca, cb = (to != AND)[:, None], (to == OR)[:, None]
        igc = np.where(ca, i2[ru, ta] - it, it) + cb * i2[ru, tb]
        ngc = np.where(ca, tables.pair[ta] - tt, tt) + cb * tables.pair[tb] - igc  # |G∩C \ U|
        gi = inter[ru, rg][:, None]  # |G∩U|, |G \ U|
        gn = size[ru, rg][:, None] - gi
        us = usize[ru][:, None]
        out = np.empty((len(rg), 3, n))  # IoU = I / (|U| + |F \ U|)
        out[:, OR] = (gi + uinter[ru] - igc) / (us + gn + out_size[ru] - ngc)
        out[:, AND] = igc / (us + ngc)
        out[:, AND_NOT] = (gi - igc) / (us + gn - ngc)
        # canonical third labels C: in P unless negated, no repeats, smallest key (lemmas 1-3)
        o = to[:, None]
        fresh = (cc != ta[:, None]) & (cc != tb[:, None])
        after_b = cc > tb[:, None]  # C > B, hence C != B (and C != A when A < B)
        pr = in_p[ru]
        ok = np.empty(out.shape, dtype=bool)
        ok[:, OR] = np.where(o == OR, after_b, fresh) & pr & or_ok[:, None]
        # (A AND NOT B) AND C = (A AND C) AND NOT B: never after AND NOT
        ok[:, AND] = (np.where(o == AND, after_b, fresh) & pr
                      & (and_ok & (to != AND_NOT))[:, None])
        ok[:, AND_NOT] = np.where(o == AND_NOT, after_b, True) & fresh & not_ok[:, None]
        out[~ok] = -1.0
        rows = out.reshape(len(rg), -1)
        arg = rows.argmax(axis=1)
        best.offer_rows(ru, rows[np.arange(len(rg)), arg], lambda r: Formula(
            (int(ta[r]), int(tb[r]), int(arg[r]) % n), (int(to[r]), int(arg[r]) // n)))
        visited[:] += np.bincount(ru, weights=ok.sum(axis=(1, 2)), minlength=nu).astype(int)
        todo[ru, rg] = False

    # a greedy start: each unit's best few length-2 formulas, extended
    k = min(_SEED, flat.shape[1])
    if k:
        seed = np.argpartition(flat, flat.shape[1] - k, axis=1)[:, flat.shape[1] - k:]
        ru = np.repeat(np.arange(nu), k)
        rg = seed.ravel()
        keep = todo[ru, rg]
        yes = np.ones(int(keep.sum()), dtype=bool)
        expand(ru[keep], rg[keep], yes, yes, yes)
    # then every prefix whose bounds, at the best IoU so far, let an extension reach it
    ru, rg, or_ok, and_ok, not_ok = _survivors(units, tables, best.iou.copy(), in_p, uinter,
                                               usize, i2, inter, size, todo)
    expand(ru, rg, or_ok, and_ok, not_ok)
    return best.results(visited)


class _Best:
    """Each unit's best formula so far under the tie rule: higher IoU, then shorter, then
    smaller key (IoUs <= 0 never count: no label meets the unit)."""

    def __init__(self, n_units: int) -> None:
        self.iou = np.full(n_units, -1.0)
        self.formula = [Formula(())] * n_units

    def offer(self, iou: np.ndarray, make: Callable[[int], Formula]) -> None:
        """iou [units, k], its columns in key order; make(column) -> formula."""
        arg = iou.argmax(axis=1)
        top = iou[np.arange(len(arg)), arg]
        for u in np.flatnonzero((top >= self.iou) & (top > 0.0)).tolist():
            self._take(u, float(top[u]), make(int(arg[u])))

    def offer_rows(self, ru: np.ndarray, top: np.ndarray,
                   make: Callable[[int], Formula]) -> None:
        """One candidate per row r (unit ru[r], IoU top[r]), rows by unit then key."""
        hit = np.flatnonzero((top >= self.iou[ru]) & (top > 0.0))
        if not len(hit):
            return
        m = np.full(len(self.iou), -np.inf)
        np.maximum.at(m, ru[hit], top[hit])
        hit = hit[top[hit] == m[ru[hit]]]
        _, first = np.unique(ru[hit], return_index=True)  # the smallest key of each unit
        for r in hit[first].tolist():
            self._take(int(ru[r]), float(top[r]), make(r))

    def _take(self, u: int, iou: float, f: Formula) -> None:
        if iou > self.iou[u] or f.key() < self.formula[u].key():
            self.iou[u], self.formula[u] = iou, f

    def results(self, visited: np.ndarray) -> List[Tuple[Formula, float, int]]:
        return [(f, max(float(v), 0.0), int(w))
                for f, v, w in zip(self.formula, self.iou, visited)]


def _survivors(units: List[UnitCounts], tables: LabelTables, best: np.ndarray,
               in_p: np.ndarray, uinter: np.ndarray, usize: np.ndarray, i2: np.ndarray,
               inter: np.ndarray, size: np.ndarray, todo: np.ndarray):
    """The length-2 prefixes G = A op B (flat indices g into [n, 3, n] per unit; ``inter``,
    ``size``: their |G∩U|, |G|, [units, 3 n^2]) marked ``todo`` that may still have an
    extension with IoU >= the unit's ``best``: (units, indices, and per kind of extension --
    OR C, AND C, AND NOT C -- whether it may).

    With phi(F) = |F∩U| - b |F \\ U| (additive over signatures), IoU(F) >= b iff
    phi(F) >= b |U|; phi+(X) sums only X's signatures of positive gain. Bounds (proofs in
    docs/formulas.md, section 3), C ranging over the canonical third labels:
    OR C:      phi(G ∪ C) <= min(phi(G) + phi+(C), phi(C) + phi+(G), phi(G) + phi+(not G));
    AND C:     phi(G ∩ C) <= phi+(G), and for G = A ∪ B <= phi(A∩C) + phi+(B∩C) (and A, B
               swapped);
    AND NOT C: phi(G \\ C) <= min(phi+(G), phi(G) + b min(|G \\ U|, max_C |G∩C \\ U|)),
               and for G = A ∪ B or A \\ B <= phi(G) - phi(G∩C) with phi(G∩C) bounded below
               from the exact phi(A∩C), phi(B∩C) and phi+(A∩B∩C) <= min of its pairs' phi+."""
    n, nu = tables.n, len(units)
    goal = best * usize - 1e-7 * np.maximum(usize, 1.0)  # a margin: ties are never pruned
    total, gfull = np.zeros(nu), np.zeros((nu, n, n))  # phi+(U), phi+(A∩C) (0 off P)
    for u in np.flatnonzero(todo.any(axis=1)).tolist():
        p = np.flatnonzero(in_p[u])
        total[u], gfull[u, p] = units[u].gains(best[u], p)
    gpos = np.diagonal(gfull, axis1=1, axis2=2)  # phi+(A) [units, n]
    phip = np.empty((nu, n, 3, n))
    phip[:, :, OR] = gpos[:, :, None] + gpos[:, None, :] - gfull
    phip[:, :, AND] = gfull
    phip[:, :, AND_NOT] = gpos[:, :, None] - gfull
    phip = phip.reshape(nu, -1)
    b2 = best[:, None]
    phi = inter - b2 * (size - inter)
    # OR C, first relaxed (max_C min(x, y) <= min(max x, max y)), then exactly where needed
    phic = np.where(in_p, uinter - b2 * (tables.size - uinter), -np.inf)  # phi(C), C in P
    gposp = np.where(in_p, gpos, -np.inf)
    orb = np.minimum(np.minimum(phip + phic.max(axis=1)[:, None],
                                phi + gposp.max(axis=1)[:, None]), phi + (total[:, None] - phip))
    lu, lg = np.nonzero(todo & ((orb >= goal[:, None]) | (phip >= goal[:, None])))
    a, op, b = lg // (3 * n), lg // n % 3, lg % n
    phip, phi, orb = phip[lu, lg], phi[lu, lg], orb[lu, lg]
    ng = size[lu, lg] - inter[lu, lg]
    gl, bl = goal[lu], best[lu]
    sel = np.flatnonzero(orb >= gl)
    if len(sel):  # OR C exactly: max over C in P of min(phi(G) + phi+(C), phi(C) + phi+(G))
        s = lu[sel]
        both = np.minimum(phi[sel, None] + gposp[s], phic[s] + phip[sel, None])
        orb[sel] = np.minimum(orb[sel], both.max(axis=1))
    # AND NOT C: |G∩C \ U| <= |A∩C \ U| (+ |B∩C \ U| for A OR B; G ⊆ A otherwise), C not A, B
    outside = tables.pair - i2
    outside[:, np.arange(n), np.arange(n)] = -np.inf
    most = outside.max(axis=2)  # M(A) [units, n]
    ma, mb = most[lu, a], most[lu, b]
    mg = np.where(op == OR, ma + mb, np.where(op == AND, np.minimum(ma, mb), ma))
    notb = np.minimum(phip, phi + bl * np.minimum(ng, mg))
    # AND C (none after A AND NOT B: that form is skipped)
    andb = np.where(op == AND_NOT, -np.inf, phip)
    # per third label C, from the exact pair counts: phi(X ∩ C) is exact for labels X, C
    # (|X∩C∩U| = 0 where X is not in P), phi+(A∩C) is gfull, phi+(A∩B∩C) <= min of its pairs'
    phi2 = i2 - best[:, None, None] * (tables.pair - i2)
    is_or = op == OR
    sel = np.flatnonzero(is_or & (andb >= gl))
    if len(sel):  # AND C, G = A ∪ B: G ∩ C = (A∩C) ⊔ ((B∩C) \ A); A, B, C in P
        s, sa, sb = lu[sel], a[sel], b[sel]
        # first for all C at once: phi(A∩C) <= max over C in P, C != A; phi+(B∩C) <= phi+(B)
        top = np.where(in_p[:, None, :] & ~np.eye(n, dtype=bool), phi2, -np.inf).max(axis=2)
        andb[sel] = np.minimum(andb[sel], np.minimum(top[s, sa] + gpos[s, sb],
                                                     top[s, sb] + gpos[s, sa]))
        sel = sel[andb[sel] >= gl[sel]]
    if len(sel):  # then C by C
        r, s, sa, sb = np.arange(len(sel)), lu[sel], a[sel], b[sel]
        both = np.minimum(phi2[s, sa] + gfull[s, sb], phi2[s, sb] + gfull[s, sa])
        both[~in_p[s]] = -np.inf
        both[r, sa] = both[r, sb] = -np.inf
        andb[sel] = np.minimum(andb[sel], both.max(axis=1))
    sel = np.flatnonzero(~(op == AND) & (notb >= gl))
    if len(sel):  # AND NOT C: phi(G \ C) = phi(G) - phi(G ∩ C)
        r, s, sa, sb = np.arange(len(sel)), lu[sel], a[sel], b[sel]
        orr = is_or[sel][:, None]
        ga, gb = gfull[s, sa], gfull[s, sb]
        triple = np.minimum(np.minimum(ga, gb), gfull[s, sa, sb][:, None])  # >= phi+(A∩B∩C)
        # phi(G ∩ C) >= phi(A∩C) + phi(B∩C) (A ∪ B) or phi(A∩C) (A \ B), less phi+(A∩B∩C)
        drop = np.where(orr, phi2[s, sa] + phi2[s, sb], phi2[s, sa]) - triple
        drop[r, sa] = drop[r, sb] = np.inf
        drop[~orr & (np.arange(n) <= sb[:, None])] = np.inf  # after A AND NOT B: C > B
        notb[sel] = np.minimum(notb[sel], phi[sel] - drop.min(axis=1))
    or_ok, and_ok, not_ok = orb >= gl, andb >= gl, notb >= gl
    keep = np.flatnonzero(or_ok | and_ok | not_ok)
    return lu[keep], lg[keep], or_ok[keep], and_ok[keep], not_ok[keep]


# -- beam (compexp) -----------------------------------------------------------------------

def _beam(unit: UnitCounts, tables: LabelTables, length: int,
          width: int) -> Tuple[Formula, float, int]:
    """compexp's beam search (vision/dissection/neuron.py, compute_best_iou), on exact counts:
    the beam starts as the ``width`` labels of highest IoU among those with IoU > 0 (ties: lower
    label first); each step extends every beam formula by every candidate label with OR, AND,
    AND NOT, pools the new formulas *after* the current beam (which competes), and keeps the
    ``width`` highest, stable (ties keep pool order); the answer is the top of the last beam."""
    n = tables.n
    iou1 = np.zeros(n)
    hit = unit.inter > 0
    iou1[hit] = unit.inter[hit] / (unit.size + tables.size[hit] - unit.inter[hit])
    pos = np.flatnonzero(iou1 > 0)
    if len(pos) == 0:
        return Formula(()), 0.0, int(hit.sum())
    visited = int(hit.sum())
    top = pos[np.argsort(-iou1[pos], kind="stable")[:width]]
    beam = [(Formula((int(c),)), iou1[c], unit.inter[c], tables.size[c]) for c in top]
    for _ in range(length - 1):
        igc, sgc = _prefix_rows(unit, tables, [e[0] for e in beam])  # all beam formulas at once
        inter, size, iou = _extend(unit, tables, np.array([e[2] for e in beam]),
                                   np.array([e[3] for e in beam]), igc, sgc)
        visited += 3 * n * len(beam)
        # the pool: the beam, then each formula's extensions in compexp's order (label-major,
        # then OR, AND, AND NOT)
        scores = np.concatenate([[e[1] for e in beam], iou.transpose(0, 2, 1).ravel()])
        ints = np.concatenate([[e[2] for e in beam], inter.transpose(0, 2, 1).ravel()])
        sizes = np.concatenate([[e[3] for e in beam], size.transpose(0, 2, 1).ravel()])
        keep = np.argsort(-scores, kind="stable")[:width]
        new = []
        for k in keep.tolist():
            if k < len(beam):
                new.append(beam[k])
                continue
            j, r = divmod(k - len(beam), 3 * n)
            c, o = divmod(r, 3)
            g = beam[j][0]
            new.append((Formula(g.labels + (c,), g.ops + (o,)), scores[k], ints[k], sizes[k]))
        beam = new
    f, iou = beam[0][0], float(beam[0][1])
    return f, iou, visited


def _prefix_rows(unit: UnitCounts, tables: LabelTables,
                 fs: Sequence[Formula]) -> Tuple[np.ndarray, np.ndarray]:
    """|G∩C∩U| and |G∩C| [len(fs), n] for formulas G of any length (lengths 1 and 2 from the
    pair and triple tables, batched; longer ones by a tally over the signatures)."""
    igc, sgc = np.empty((len(fs), tables.n)), np.empty((len(fs), tables.n))
    one = [i for i, f in enumerate(fs) if len(f) == 1]
    two = [i for i, f in enumerate(fs) if len(f) == 2]
    if one:
        a = np.array([fs[i].labels[0] for i in one])
        igc[one], sgc[one] = unit.pair_rows(a), tables.pair[a]
    if two:
        a, b = (np.array([fs[i].labels[j] for i in two]) for j in (0, 1))
        ops = np.array([fs[i].ops[0] for i in two])
        igc[two], sgc[two] = _pair_prefix_rows(unit, tables, unit.pair_rows(a),
                                               unit.pair_rows(b), a, ops, b)
    for i, f in enumerate(fs):
        if len(f) > 2:
            igc[i] = unit.tally(f)[1]
            sgc[i] = tables.tally(tables.formula_sigs(f))[1]
    return igc, sgc
