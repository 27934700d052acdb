"""Accumulators are canonical: a stream split into 1, 2 or 5 shards, the shards merged in random
orders (some shards empty, values tied), gives bit-identical states."""

import io
import itertools

import numpy as np
import pytest
import torch

from ndcore.data.labelspace import LabelSpace
from ndcore.data.probe import ProbeBatch
from ndcore.data.vocabulary import Vocabulary
from ndcore.engine.layerstats import PassStats
from ndcore.engine.statistics import Statistic
from ndcore.engine.statistics.counts import TallyCounts
from ndcore.engine.statistics.tail import TopTail, tail_size
from ndcore.engine.statistics.topk import TopKImages

UNITS, H, W, SH, SW = 4, 3, 3, 6, 6


def vocabulary():
    # "b" is in two categories, so the label space has several ids for it
    cats = ["object", "part", "scene"]
    names = ["-", "a", "b", "c", "s"]
    label_cats = [[], ["object"], ["object", "part"], ["part"], ["scene"]]
    cover = [{}, {"object": 1}, {"object": 0.2, "part": 0.3}, {"part": 1}, {"scene": 1}]
    primary = np.array([-1, 0, 1, 1, 2])
    return Vocabulary(cats, names, label_cats, primary, cover)


def make_batches(n_images, seed):
    """Batches with heavy ties: activations on a coarse grid, some maps all equal."""
    rng = np.random.default_rng(seed)
    ls = LabelSpace(vocabulary())
    batches = []
    for start in range(0, n_images, 3):
        idx = list(range(start, min(n_images, start + 3)))
        maps = torch.from_numpy(rng.integers(0, 4, size=(len(idx), UNITS, H, W)).astype(np.float32))
        maps[:, 0] = 1.0  # a unit whose maps are all tied
        planes = rng.integers(0, 4, size=(len(idx), 2, SH, SW))
        labels = np.stack([ls.encode_planes(p, [0, 1]) for p in planes])
        img = [ls.encode_image_labels([4], [2]) if i % 2 else [0] for i in idx]
        images = torch.stack([torch.full((3, 4, 4), i % 256, dtype=torch.uint8) for i in idx])
        batches.append(ProbeBatch(
            torch.tensor(idx), images,
            torch.from_numpy(labels), torch.tensor(img, dtype=torch.int64),
            torch.from_numpy(rng.random((len(idx), 3)) < 0.7)))
    return batches, ls


def make_stats(ls, n_images, thresholds):
    """A pass's statistics of layer "L": its tail, top images and counts (rows of our own: in a
    run, a layer has either a tail or counts in pass 1)."""
    keep = tail_size(n_images * H * W, 0.05)
    rows = [
        Statistic("tail", TopTail, (1,), make=lambda *_: TopTail(UNITS, keep),
                  restore=lambda run, state: TopTail(state["num_units"], state["keep"])),
        Statistic("topk", TopKImages, (1,), make=lambda *_: TopKImages(UNITS, 4, keep_images=True),
                  restore=lambda run, state: TopKImages(state["num_units"], state["k"], True)),
        Statistic("counts", TallyCounts, (1,), make=lambda *_: TallyCounts(thresholds, ls),
                  restore=lambda run, state: TallyCounts(torch.as_tensor(state["thresholds"]),
                                                         ls)),
    ]
    return lambda: PassStats(["L"], rows, run=None)


def serialise(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for part in a:
        for key in a[part]:
            x, y = a[part][key], b[part][key]
            if x is None or y is None:
                assert x is None and y is None, (part, key)
            elif isinstance(x, torch.Tensor):
                assert x.dtype == y.dtype and torch.equal(x, y), (part, key)
            elif isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and np.array_equal(x, y), (part, key)
            else:
                assert x == y, (part, key)


@pytest.mark.parametrize("seed", range(3))
def test_sharded_merge_is_bit_identical(seed):
    n = 20
    batches, ls = make_batches(n, seed)
    thresholds = torch.tensor([0.5, 1.5, 2.0, 2.5])
    new_stats = make_stats(ls, n, thresholds)

    whole = new_stats()
    for b in batches:
        whole["L"].add(maps_of(b, seed), b)
    reference = whole.state_dict()["L"]

    rng = np.random.default_rng(seed)
    for n_shards in (1, 2, 5):
        # Random, uneven shards of batches; with 5 shards, the last one stays empty.
        owner = rng.integers(0, max(1, n_shards - 1) if n_shards == 5 else n_shards,
                             size=len(batches))
        shards = []
        for s in range(n_shards):
            stats = new_stats()
            for b, o in zip(batches, owner):
                if o == s:
                    stats["L"].add(maps_of(b, seed), b)
            shards.append(stats.state_dict())
        if n_shards == 5:
            assert any(s["L"] is None for s in shards), "premise: an empty shard"
        kept = reference["topk"]["image_indices"].tolist()
        assert kept == sorted(set(reference["topk"]["indices"].reshape(-1).tolist()))
        assert all(int(reference["topk"]["images"][j, 0, 0, 0]) == i % 256
                   for j, i in enumerate(kept))
        for order in itertools.islice(itertools.permutations(range(n_shards)), 6):
            merged = new_stats()
            merged.merge_states([shards[i] for i in order])
            assert_same_state(merged.state_dict()["L"], reference)
            assert serialise(merged.state_dict()) == serialise(whole.state_dict())


def maps_of(batch, seed):
    """The maps of a batch, a pure function of its probe indices."""
    out = []
    for i in batch.indices.tolist():
        g = np.random.default_rng(1000 * seed + i)
        m = g.integers(0, 4, size=(UNITS, H, W)).astype(np.float32)
        m[0] = 1.0  # tied everywhere: top-k must break ties by probe index
        out.append(m)
    return torch.from_numpy(np.stack(out))


def test_topk_ties_break_by_probe_index():
    top = TopKImages(1, 3)
    maps = torch.zeros(6, 1, 2, 2)
    batch = lambda idx: ProbeBatch(torch.tensor(idx), torch.zeros(len(idx), 0, 0, 0), None, None, None)
    top.add(maps[:3], batch([9, 4, 7]))
    top.add(maps[3:], batch([1, 8, 5]))
    assert top.indices.tolist() == [[1, 4, 5]]


def test_topk_equals_a_sort_of_every_map_when_few_units_change_per_batch():
    """Many batches of continuous values: after the first, most batches change the top k of
    only some units (the premise is checked), and the result must equal a full sort."""
    gen = torch.Generator().manual_seed(3)
    units, k, n = 6, 3, 400
    maps = torch.rand(n, units, 2, 3, generator=gen)
    top = TopKImages(units, k, keep_images=True)
    order = torch.randperm(n, generator=gen)  # probe indices arrive in any order
    partial = 0
    for start in range(0, n, 8):
        rows = order[start:start + 8]
        batch = ProbeBatch(rows, (rows.view(-1, 1, 1, 1) % 256).to(torch.uint8).expand(
            -1, 3, 4, 4).contiguous(), None, None, None)
        before = top.indices.clone()
        top.add(maps[rows], batch)
        if before.shape[1] == k:
            changed = (before != top.indices).any(1)
            partial += int(changed.any() and not changed.all())
    assert partial > 5, "premise: batches that change only some units' top k"
    peaks = maps.amax(dim=(2, 3))  # [n, U]
    for u in range(units):
        ranked = sorted(range(n), key=lambda i: (-float(peaks[i, u]), i))[:k]
        assert top.indices[u].tolist() == ranked
        assert torch.equal(top.values[u], peaks[ranked, u])
        assert torch.equal(top.maps[u], maps[ranked, u].half())
    state = top.state_dict()  # images no unit shows any more are not in it
    assert state["image_indices"].tolist() == sorted(set(top.indices.reshape(-1).tolist()))
    for index, image in zip(state["image_indices"].tolist(), state["images"]):
        assert int(image[0, 0, 0]) == index % 256


def test_topk_takes_every_map_that_enters_even_when_units_differ_in_how_many():
    """Once full, a batch is narrowed to the maps that can enter; units that take 3, 1 and 0
    new maps from one batch (the premise), with ties at the k-th value, equal a full sort."""
    k = 3
    top = TopKImages(3, k)
    first = torch.tensor([[5.0, 5.0, 5.0], [4.0, 4.0, 4.0], [3.0, 3.0, 3.0]])  # [B, U]
    second = torch.tensor([[9.0, 1.0, 0.0], [8.0, 3.0, 0.0], [7.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    batches = [(first, [10, 11, 12]), (second, [0, 1, 2, 13])]
    peaks_by_index = {}
    for peaks, idx in batches:
        maps = peaks[:, :, None, None].expand(-1, -1, 2, 2).contiguous()
        before = top.indices.clone()
        top.add(maps, ProbeBatch(torch.tensor(idx), torch.zeros(len(idx), 0, 0, 0), None, None,
                                 None))
        peaks_by_index.update({i: peaks[r] for r, i in enumerate(idx)})
    entered = [len(set(top.indices[u].tolist()) - set(before[u].tolist())) for u in range(3)]
    assert entered == [3, 1, 0]  # premise: 3 (all), 1 (a tie at the k-th value, lower index), 0
    for u in range(3):
        ranked = sorted(peaks_by_index, key=lambda i: (-float(peaks_by_index[i][u]), i))[:k]
        assert top.indices[u].tolist() == ranked
        assert torch.equal(top.maps[u, :, 0, 0], torch.stack([peaks_by_index[i][u]
                                                              for i in ranked]).half())


def test_tail_state_has_canonical_width():
    a, b = TopTail(2, 5), TopTail(2, 5)
    a.add_values(torch.arange(12, dtype=torch.float32).view(2, 6))
    for chunk in torch.arange(12, dtype=torch.float32).view(2, 6).split(1, dim=1):
        b.add_values(chunk)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["tail"].shape == (2, 5) and torch.equal(sa["tail"], sb["tail"])


def test_merge_refuses_different_settings():
    with pytest.raises(ValueError, match="different keep"):
        TopTail(2, 5).merge(TopTail(2, 6))
    with pytest.raises(ValueError, match="different k"):
        TopKImages(2, 3).merge(TopKImages(2, 4))
    ls = LabelSpace(vocabulary())
    with pytest.raises(ValueError, match="different thresholds"):
        TallyCounts(torch.zeros(2), ls).merge(TallyCounts(torch.ones(2), ls))
