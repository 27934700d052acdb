"""The formula search core (ndcore.formulas): data, formulas, optimal and beam search.

Oracles are written here from the definition (docs/formulas.md): explicit boolean masks over
every pixel of every image, every left-deep formula up to length 3, IoU = |F∩U| / |F∪U|.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ndcore.errors import DatasetError
from ndcore.formulas.data import FormulaDataBuilder
from ndcore.formulas.formula import (AND, AND_NOT, OR, Formula, FormulaError, evaluate,
                                     format_formula, parse_formula)
from ndcore.formulas.search import search_formulas

NAMES = ["none", "water", "river", "blue-c", "street at night", "sky", "tree", "grass"]


# -- a random probe world, kept both as FormulaData and as explicit masks ------------------

def random_case(seed: int, n_images: int = 6, n_units: int = 16, n_labels: int = len(NAMES)):
    rng = np.random.default_rng(seed)
    builder = FormulaDataBuilder(NAMES[:n_labels], n_units)
    label_masks = {l: [] for l in range(1, n_labels)}
    unit_masks = [[] for _ in range(n_units)]
    formulas = [rng.choice(np.arange(1, n_labels), size=3) for _ in range(n_units)]
    for i in range(n_images):
        h, w = rng.integers(3, 9, size=2)  # images of different sizes
        planes = np.zeros((3, h, w), dtype=np.int64)
        for p in range(3):  # overlapping labels: each plane paints rectangles of some label
            for _ in range(rng.integers(1, 4)):
                lab = rng.integers(1, n_labels)
                y, x = rng.integers(0, h), rng.integers(0, w)
                planes[p, y:y + rng.integers(1, h + 1), x:x + rng.integers(1, w + 1)] = lab
        image_labels = [int(l) for l in rng.choice(np.arange(1, n_labels), size=rng.integers(0, 2),
                                                   replace=False)]
        present = {l: (planes == l).any(0) | (l in image_labels) for l in label_masks}
        units = np.zeros((n_units, h, w), dtype=bool)
        for u in range(n_units):  # a unit follows a random formula, with some noise or none
            a, b, c = formulas[u]
            pa, pb, pc = present[a], present[b], present[c]
            base = [pa | pb, (pa & ~pb) & ~pc, (pa & pc) | pb, (pa | pb) & pc,
                    (pa & pb) & ~pc][u % 5]
            flip = rng.random((h, w)) < (0.0, 0.05, 0.15)[(u // 5) % 3]
            if u != n_units - 1:  # the last unit never fires
                units[u] = base ^ flip
        units[0, 0, 0] = True  # never empty for unit 0
        masks = torch.from_numpy(units) if i % 2 else units
        builder.add_image(planes, image_labels, masks)
        for l in label_masks:
            label_masks[l].append(present[l].ravel())
        for u in range(n_units):
            unit_masks[u].append(units[u].ravel())
    data = builder.finish()
    labels = {l: np.concatenate(m) for l, m in label_masks.items()}
    units = [np.concatenate(m) for m in unit_masks]
    return data, labels, units


def iou(f: np.ndarray, u: np.ndarray) -> float:
    union = (f | u).sum()
    return float((f & u).sum() / union) if union else 0.0


def all_formulas(cands, length):
    for k in range(1, length + 1):
        for labs in itertools.product(cands, repeat=k):
            for ops in itertools.product((OR, AND, AND_NOT), repeat=k - 1):
                yield Formula(tuple(labs), tuple(ops))


def exhaustive_best(labels, unit, cands, length=3):
    """The best IoU over every formula up to the length (the definition, by brute force)."""
    best = 0.0
    for f in all_formulas(cands, length):
        best = max(best, iou(evaluate(f, labels.__getitem__), unit))
    return best


def exhaustive_best_fast(labels, unit, cands):
    """The same brute force up to length 3, with the last literal vectorised over all labels."""
    lab = np.stack([labels[c] for c in cands])  # [n, pixels]

    def best_of(masks):  # masks [k, pixels] -> best IoU
        inter = (masks & unit).sum(1)
        union = (masks | unit).sum(1)
        return float(np.max(np.where(union > 0, inter / np.maximum(union, 1), 0.0)))

    best = best_of(lab)
    for g in lab:
        best = max(best, best_of(g | lab), best_of(g & lab), best_of(g & ~lab))
    for a in lab:
        for b in lab:
            for g in (a | b, a & b, a & ~b):
                best = max(best, best_of(g | lab), best_of(g & lab), best_of(g & ~lab))
    return best


def compexp_beam(labels, unit, cands, length=3, width=5):
    """compexp's beam (vision/dissection/neuron.py, compute_best_iou), on explicit masks."""
    ious = {l: iou(labels[l], unit) for l in cands if (labels[l] & unit).any()}
    nonzero = [(Formula((l,)), v) for l, v in ious.items() if v > 0]
    if not nonzero:
        return Formula(()), 0.0
    beam = sorted(nonzero, key=lambda e: -e[1])[:width]  # sorted() is stable: ties keep order
    for _ in range(length - 1):
        new = []
        for f, _ in beam:
            for l in cands:
                for op in (OR, AND, AND_NOT):
                    g = Formula(f.labels + (l,), f.ops + (op,))
                    new.append((g, iou(evaluate(g, labels.__getitem__), unit)))
        beam = sorted(beam + new, key=lambda e: -e[1])[:width]
    return beam[0]


# -- formulas -------------------------------------------------------------------------------

def test_format_and_parse_round_trip():
    f = Formula((1, 2, 3), (OR, AND_NOT))
    assert format_formula(f, NAMES) == "(water OR river) AND NOT blue-c"
    assert format_formula(Formula((4, 5), (AND,)), NAMES) == "street at night AND sky"
    assert format_formula(Formula((4, 5, 6, 7), (AND, OR, AND_NOT)), NAMES) == \
        "((street at night AND sky) OR tree) AND NOT grass"
    for f in itertools.islice(all_formulas(range(1, len(NAMES)), 3), 0, None, 37):
        assert parse_formula(format_formula(f, NAMES), NAMES) == f
    with pytest.raises(FormulaError, match="cannot parse formula 'water XOR river'"):
        parse_formula("water XOR river", NAMES)


def truth_table(f: Formula, columns) -> tuple:
    return tuple(evaluate(f, columns.__getitem__).tolist())


def test_lemmas_by_truth_table():
    """docs/formulas.md, lemmas 2 and 3: a formula up to length 3 with a repeated label equals
    one of length <= 2 (or the empty set); the skipped forms equal the kept smaller-key ones."""
    rows = np.array(list(itertools.product([False, True], repeat=3)))
    columns = {1: rows[:, 0], 2: rows[:, 1], 3: rows[:, 2]}
    short = {truth_table(f, columns) for f in all_formulas([1, 2, 3], 2)}
    empty = (False,) * len(rows)
    for f in all_formulas([1, 2, 3], 3):
        if len(set(f.labels)) < len(f.labels):
            assert truth_table(f, columns) in short | {empty}, f
    a, b, c = 1, 2, 3
    same = [(Formula((a, b, c), (AND_NOT, AND)), Formula((a, c, b), (AND, AND_NOT))),
            (Formula((a, c, b), (AND_NOT, AND_NOT)), Formula((a, b, c), (AND_NOT, AND_NOT))),
            (Formula((b, a, c), (OR, AND)), Formula((a, b, c), (OR, AND))),
            (Formula((b, a, c), (AND, OR)), Formula((a, b, c), (AND, OR))),
            (Formula((c, a, b), (OR, OR)), Formula((a, b, c), (OR, OR))),
            (Formula((b, c, a), (AND, AND)), Formula((a, b, c), (AND, AND)))]
    for skipped, kept in same:
        assert truth_table(skipped, columns) == truth_table(kept, columns)
        assert kept.key() < skipped.key()


# -- data -----------------------------------------------------------------------------------

def test_data_counts_every_pixel_once():
    data, labels, units = random_case(0)
    n_pixels = len(units[0])
    assert data.n_pixels == n_pixels == int(data.sig_count.sum())
    sizes = data.label_sizes()
    for l, m in labels.items():
        assert sizes[l] == m.sum()
    for u, m in enumerate(units):
        assert data.unit_rows(u)[1].sum() == m.sum()


def test_data_image_without_planes_and_layer_without_units():
    b = FormulaDataBuilder(NAMES, 1)
    b.add_image(np.zeros((0, 3, 4), int), [2], np.ones((1, 3, 4), bool))  # image labels only
    b.add_image(np.full((1, 2, 2), 1), [], np.zeros((1, 2, 2), bool))
    data = b.finish()
    assert data.label_sizes()[[1, 2]].tolist() == [4, 12] and data.n_pixels == 16
    r, = search_formulas(data, [0])
    assert (r.formula, r.iou) == ("river", 1.0)
    empty = FormulaDataBuilder(NAMES, 0)
    empty.add_image(np.full((1, 2, 2), 1), [], np.zeros((0, 2, 2), bool))
    assert empty.finish().n_pixels == 4


def test_data_rejects_bad_input():
    b = FormulaDataBuilder(NAMES, 2)
    with pytest.raises(DatasetError, match="image 0: unit masks have shape"):
        b.add_image(np.zeros((1, 4, 4), int), [], np.zeros((2, 4, 5), bool))
    with pytest.raises(DatasetError, match="image 0: label number 9 is outside"):
        b.add_image(np.full((1, 4, 4), 9), [], np.zeros((2, 4, 4), bool))


def test_data_from_mask_pixels_equals_data_from_dense_masks():
    """add_image_pixels takes the masks as (unit, flat pixel) pairs: the same counts as the
    dense masks, whatever the pairs' order."""
    rng = np.random.default_rng(3)
    dense, sparse = FormulaDataBuilder(NAMES, 3), FormulaDataBuilder(NAMES, 3)
    for h, w in ((4, 5), (3, 3), (6, 2)):
        planes = rng.integers(0, len(NAMES), (2, h, w))
        masks = rng.random((3, h, w)) < 0.3
        dense.add_image(planes, [1], masks)
        u, pix = np.nonzero(masks.reshape(3, -1))
        order = rng.permutation(len(u))
        sparse.add_image_pixels(planes, [1], u[order], pix[order])
    a, b = dense.finish(), sparse.finish()
    for name in ("sig_ptr", "sig_labels", "sig_count", "unit_ptr", "unit_sig", "unit_count"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.unit_count.sum() > 0  # premise: the masks have pixels
    with pytest.raises(DatasetError, match="image 3: a mask pixel is outside 3 units x 6x2"):
        sparse.add_image_pixels(planes, [], np.array([0]), np.array([12]))


# -- optimal = exhaustive; beam = compexp; beam <= optimal ----------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_optimal_matches_exhaustive_and_beam_matches_compexp(seed):
    data, labels, units = random_case(seed)
    cands = [l for l in labels if labels[l].any()]
    opt = search_formulas(data, range(data.n_units), method="optimal")
    beam = search_formulas(data, range(data.n_units), method="beam", beam=3)
    for u, unit in enumerate(units):
        want = exhaustive_best(labels, unit, cands)
        assert opt[u].iou == pytest.approx(want, abs=1e-12), (seed, u)
        assert opt[u].optimal and not beam[u].optimal
        if want > 0:  # the reported formula really has the reported IoU
            f = parse_formula(opt[u].formula, NAMES)
            assert len(f) == opt[u].length <= 3
            assert iou(evaluate(f, labels.__getitem__), unit) == pytest.approx(opt[u].iou)
        else:
            assert opt[u].formula == "" and opt[u].length == 0
        ref_f, ref_iou = compexp_beam(labels, unit, cands, width=3)
        assert beam[u].formula == format_formula(ref_f, NAMES), (seed, u)
        assert beam[u].iou == pytest.approx(ref_iou, abs=1e-12)
        assert beam[u].iou <= opt[u].iou + 1e-12


def test_beam_of_length_4_matches_compexp():
    data, labels, units = random_case(8)
    cands = [l for l in labels if labels[l].any()]
    for r in search_formulas(data, range(6), method="beam", length=4, beam=2):
        f, v = compexp_beam(labels, units[r.unit], cands, length=4, width=2)
        assert (r.formula, r.iou) == (format_formula(f, NAMES), pytest.approx(v, abs=1e-12))


def blob_case(seed: int, n_labels: int = 12, n_units: int = 12):
    """Many overlapping labels and units that are mostly blobs of their own (low IoUs, as in a
    random network): the regime where the bounds, not the greedy start, decide."""
    rng = np.random.default_rng(seed)
    names = [f"l{i}" for i in range(n_labels)]
    builder = FormulaDataBuilder(names, n_units)
    labels = {l: [] for l in range(1, n_labels)}
    unit_masks = [[] for _ in range(n_units)]
    for _ in range(8):
        h, w = rng.integers(4, 12, size=2)
        planes = np.zeros((4, h, w), dtype=np.int64)
        for p in range(4):
            for _ in range(rng.integers(1, 4)):
                y, x = rng.integers(0, h), rng.integers(0, w)
                planes[p, y:y + rng.integers(1, h), x:x + rng.integers(1, w)] = \
                    rng.integers(1, n_labels)
        image_labels = [int(rng.integers(1, n_labels))] if rng.random() < 0.3 else []
        units = np.zeros((n_units, h, w), dtype=bool)
        for u in range(n_units):
            y, x = rng.integers(0, h), rng.integers(0, w)
            units[u, y:y + rng.integers(1, 4), x:x + rng.integers(1, 5)] = True
            lab = (planes == 1 + u % (n_labels - 1)).any(0)
            units[u] |= lab & (rng.random((h, w)) < 0.5)
        builder.add_image(planes, image_labels, units)
        for l in labels:
            labels[l].append(((planes == l).any(0) | (l in image_labels)).ravel())
        for u in range(n_units):
            unit_masks[u].append(units[u].ravel())
    labels = {l: np.concatenate(m) for l, m in labels.items()}
    return builder.finish(), labels, [np.concatenate(m) for m in unit_masks]


@pytest.mark.parametrize("seed", range(8))
def test_optimal_matches_exhaustive_where_the_bounds_decide(seed):
    data, labels, units = blob_case(seed)
    cands = [l for l in labels if labels[l].any()]
    for r in search_formulas(data, range(data.n_units)):
        assert r.iou == pytest.approx(exhaustive_best_fast(labels, units[r.unit], cands),
                                      abs=1e-12), (seed, r.unit)


@pytest.mark.parametrize("seed", range(6))
def test_bounds_alone_find_the_optimum_from_just_below_it(seed, monkeypatch):
    """The most demanding start for the bounds: no greedy step, and a best IoU so far just
    below the optimum, so every prefix of an optimal formula must survive its bound."""
    from ndcore.formulas import search as search_module

    data, labels, units = blob_case(100 + seed) if seed % 2 else random_case(100 + seed)
    cands = [l for l in labels if labels[l].any()]
    monkeypatch.setattr(search_module, "_SEED", 0)
    for u, unit in enumerate(units):
        want = exhaustive_best_fast(labels, unit, cands)
        if want == 0:
            continue
        start = want * (1 - 1e-9)

        def head_start(self, n_units, start=start):
            self.iou, self.formula = np.full(n_units, start), [Formula(())] * n_units

        monkeypatch.setattr(search_module._Best, "__init__", head_start)
        r, = search_formulas(data, [u])
        assert r.iou == pytest.approx(want, abs=1e-12), (seed, u)


def test_triples_tallied_on_demand_give_the_same_answers(monkeypatch):
    """Past DENSE_TRIPLES labels^3, |A∩B∩C| rows are tallied from the signatures on demand."""
    from ndcore.formulas import tables as tables_module

    data, labels, units = random_case(9)
    dense = search_formulas(data, range(data.n_units))
    beam = search_formulas(data, range(data.n_units), method="beam")
    monkeypatch.setattr(tables_module, "DENSE_TRIPLES", 0)
    data.cache.clear()
    assert search_formulas(data, range(data.n_units)) == dense
    assert search_formulas(data, range(data.n_units), method="beam") == beam
    assert next(iter(data.cache.values())).triple is None


def test_optimal_over_given_labels_and_shorter_lengths():
    data, labels, units = random_case(5)
    for length in (1, 2):
        res = search_formulas(data, [0, 1], length=length, labels=[1, 2, 3, 4])
        for r in res:
            assert r.iou == pytest.approx(exhaustive_best(labels, units[r.unit], [1, 2, 3, 4],
                                                          length), abs=1e-12)
            assert r.length <= length


def test_visited_is_below_the_exhaustive_count():
    data, labels, units = random_case(6, n_images=10)
    n = sum(1 for l in labels if labels[l].any())
    everything = n + 3 * n ** 2 + 9 * n ** 3
    res = [r for r in search_formulas(data, range(data.n_units)) if r.iou > 0]
    assert len(res) >= 8
    assert all(0 < r.visited < everything for r in res)
    assert min(r.visited for r in res) < everything / 2


def test_planted_case_beam_is_suboptimal():
    """U = X ∪ Y ∪ Z (disjoint thirds): (X OR Y) OR Z is perfect, but five decoys, each on the
    same 24 of U's 30 pixels plus 6 pixels of their own, outscore X, Y, Z alone, so the beam
    never holds X, Y or Z and ends below 1."""
    names = ["none", "x", "y", "z", "d1", "d2", "d3", "d4", "d5"]
    w = 30 + 5 * 6
    planes = np.zeros((6, 1, w), dtype=np.int64)
    planes[0, 0, 0:10], planes[0, 0, 10:20], planes[0, 0, 20:30] = 1, 2, 3
    shared = np.r_[0:8, 10:18, 20:28]
    for d in range(5):
        planes[1 + d, 0, shared] = 4 + d
        planes[1 + d, 0, 30 + 6 * d:36 + 6 * d] = 4 + d
    unit = np.zeros((1, 1, w), dtype=bool)
    unit[0, 0, :30] = True
    b = FormulaDataBuilder(names, 1)
    b.add_image(planes, [], unit)
    data = b.finish()
    opt, = search_formulas(data, [0], method="optimal")
    beam, = search_formulas(data, [0], method="beam", beam=5)
    single = {r.formula: r.iou for r in [search_formulas(data, [0], length=1, labels=[l])[0]
                                         for l in range(1, 9)]}
    assert min(single[f"d{i}"] for i in range(1, 6)) > max(single[c] for c in "xyz")  # premise
    assert opt.iou == 1.0 and opt.optimal
    assert opt.formula in {"(x OR y) OR z", "(x OR z) OR y", "(y OR z) OR x"}
    assert opt.formula == "(x OR y) OR z"  # the tie rule: smallest (L1, op1, L2, op2, L3)
    assert beam.iou < 0.9 and not beam.optimal


def test_planted_case_needs_the_and_bound():
    """U is exactly (a AND NOT b) AND NOT c, but twelve decoys (U less 4 pixels, plus one pixel
    of their own) make every good length-2 formula a pair of decoys (IoU 0.96), so the answer
    is found only by expanding the prefix a AND NOT b, whose bound phi+ = |U| just clears
    0.96 |U|: an AND bound 10% too tight would prune it."""
    names = ["none", "a", "b", "c"] + [f"d{i}" for i in range(12)]
    w = 96 + 4 + 25 + 25 + 12
    planes = np.zeros((13, 1, w), dtype=np.int64)
    planes[0, 0, :150] = 1                      # a: U and 50 pixels outside it
    planes[1, 0, 100:125] = 2                   # b, c: those 50 pixels
    planes[1, 0, 125:150] = 3
    for i in range(12):
        planes[1 + i, 0, :96] = 4 + i           # decoys: U less its last 4 pixels ...
        planes[1 + i, 0, 150 + i] = 4 + i       # ... and one pixel of their own
    unit = np.zeros((1, 1, w), dtype=bool)
    unit[0, 0, :100] = True
    b = FormulaDataBuilder(names, 1)
    b.add_image(planes, [], unit)
    data = b.finish()
    two, = search_formulas(data, [0], length=2)
    assert two.iou == pytest.approx(0.96)  # premise: the decoys lead at length 2
    opt, = search_formulas(data, [0])
    assert (opt.formula, opt.iou) == ("(a AND NOT b) AND NOT c", 1.0)


def test_planted_case_needs_both_labels_in_the_and_not_bound():
    """U is exactly (a OR b) AND NOT c: a and b each hold half of U plus 25 pixels outside it,
    which c covers; twelve decoys (U less 4 pixels, plus one pixel of their own) lead at length
    2 (IoU 0.96). Removing c's pixels from a OR b takes 25 outside pixels from a *and* 25 from
    b, so the AND NOT bound of the prefix a OR b must add both labels' most removable outside
    pixels, M(a) + M(b) = 50: with max(M(a), M(b)) = 25 it would fall below 0.96 |U| and the
    answer would be pruned."""
    names = ["none", "a", "b", "c"] + [f"d{i}" for i in range(12)]
    w = 150 + 12
    planes = np.zeros((14, 1, w), dtype=np.int64)
    planes[0, 0, np.r_[0:50, 100:125]] = 1      # a: U's first half, 25 pixels outside
    planes[0, 0, np.r_[50:100, 125:150]] = 2    # b: U's second half, 25 more outside
    planes[1, 0, 100:150] = 3                   # c: exactly those 50 outside pixels
    for i in range(12):
        planes[2 + i, 0, :96] = 4 + i           # decoys: U less its last 4 pixels ...
        planes[2 + i, 0, 150 + i] = 4 + i       # ... and one pixel of their own
    unit = np.zeros((1, 1, w), dtype=bool)
    unit[0, 0, :100] = True
    b = FormulaDataBuilder(names, 1)
    b.add_image(planes, [], unit)
    data = b.finish()
    two, = search_formulas(data, [0], length=2)
    assert two.iou == pytest.approx(0.96)  # premise: the decoys lead at length 2
    # premise: with max(M(a), M(b)) the bound phi(G) + b M of G = a OR b misses b |U|
    size_u, outside_g, most = 100, 50, 25
    assert (size_u - 0.96 * outside_g) + 0.96 * most < 0.96 * size_u
    opt, = search_formulas(data, [0])
    assert (opt.formula, opt.iou) == ("(a OR b) AND NOT c", 1.0)


def test_planted_case_needs_the_triple_in_the_and_not_bound(monkeypatch):
    """U = X ∪ Y ∪ T (450, 450, 100 pixels); a = X ∪ T ∪ Oa, b = Y ∪ T ∪ Ob, c = T ∪ Oa ∪ Ob
    (Oa, Ob: 250 pixels each outside U), so (a OR b) AND NOT c = X ∪ Y, IoU 0.9, the optimum.
    Started (no greedy step) from a best IoU just below 0.9, the search must keep the prefix
    a OR b for AND NOT: bounding phi((a ∪ b) ∩ c) from below by phi(a∩c) + phi(b∩c) counts T's
    unit pixels twice, so the bound must add back phi+(a∩b∩c) (T's 100 pixels) -- all of it:
    at 90% it already prunes the answer."""
    from ndcore.formulas import search as search_module

    names = ["none", "a", "b", "c"]
    x, y, t = np.r_[0:450], np.r_[450:900], np.r_[900:1000]
    oa, ob = np.r_[1000:1250], np.r_[1250:1500]
    planes = np.zeros((3, 1, 1500), dtype=np.int64)
    planes[0, 0, np.r_[x, t, oa]] = 1
    planes[1, 0, np.r_[y, t, ob]] = 2
    planes[2, 0, np.r_[t, oa, ob]] = 3
    unit = np.zeros((1, 1, 1500), dtype=bool)
    unit[0, 0, :1000] = True
    b = FormulaDataBuilder(names, 1)
    b.add_image(planes, [], unit)
    data = b.finish()
    start = 0.9 * (1 - 1e-9)
    # premise: without phi+(a∩b∩c) = 100 (or with 90% of it) the AND NOT bound of G = a OR b,
    # phi(G) - phi(a∩c) - phi(b∩c) + phi+(a∩b∩c), misses start |U|
    phi_g, phi_ac = 1000 - start * 500, 100 - start * 250
    assert phi_g - 2 * phi_ac + 0.9 * 100 < start * 1000 <= phi_g - 2 * phi_ac + 100

    def head_start(self, n_units):
        self.iou, self.formula = np.full(n_units, start), [Formula(())] * n_units

    monkeypatch.setattr(search_module, "_SEED", 0)
    monkeypatch.setattr(search_module._Best, "__init__", head_start)
    opt, = search_formulas(data, [0])
    assert (opt.formula, opt.iou) == ("(a OR b) AND NOT c", pytest.approx(0.9))
    monkeypatch.undo()
    usual, = search_formulas(data, [0])  # and the same from the usual start
    assert (usual.formula, usual.iou) == (opt.formula, opt.iou)


def test_empty_unit_and_bad_arguments():
    data, _, _ = random_case(7)
    r, = search_formulas(data, [data.n_units - 1])  # the last unit never fires
    assert (r.formula, r.iou, r.length, r.optimal) == ("", 0.0, 0, True)
    with pytest.raises(FormulaError, match="unit 99 does not exist"):
        search_formulas(data, [99])
    with pytest.raises(FormulaError, match="--search 'greedy': unknown formula search"):
        search_formulas(data, [0], method="greedy")
    with pytest.raises(FormulaError, match="up to length 3"):
        search_formulas(data, [0], length=4)
    with pytest.raises(FormulaError, match="--beam 0"):
        search_formulas(data, [0], beam=0)
    with pytest.raises(FormulaError, match="--length 0"):
        search_formulas(data, [0], length=0)
    with pytest.raises(FormulaError, match="candidate label number 42"):
        search_formulas(data, [0], labels=[1, 42])
