"""Kept maps read back give exactly the counts of the original maps, though only the values
around those above the floor are stored (the rest reads back far below the threshold)."""

import pytest
import torch
import torch.nn.functional as F

from ndcore.engine.mapstore import MapStore, below_threshold_fill
from ndcore.ops import tally


def smooth_maps(seed, n=6, units=5, size=9):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, units, 3, 3, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("budget", [0, 10**9])  # on disk, in memory
def test_read_back_maps_count_exactly(tmp_path, seed, budget):
    maps = smooth_maps(seed)
    flat = maps.transpose(0, 1).reshape(maps.shape[1], -1)
    thresholds = torch.quantile(flat, 0.97, dim=1)
    floor = thresholds - 0.05 * seed  # a running floor is at most the final threshold
    labels = torch.randint(0, 4, (maps.shape[0], 1, 20, 20), generator=torch.Generator().manual_seed(seed))
    label_category = torch.tensor([-1, 0, 0, 1])

    store = MapStore(tmp_path / "maps", ["L"], memory_budget=budget)
    store.append("L", maps, torch.arange(maps.shape[0]), floor)
    back = store.dense("L", torch.arange(maps.shape[0]), (9, 9),
                       below_threshold_fill(thresholds), "cpu")
    want = tally(maps, thresholds, labels, label_category, 4, 2)
    got = tally(back, thresholds, labels, label_category, 4, 2)
    for w, g in zip(want, got):
        assert torch.equal(w, g)

    # premises: values were dropped, and some mask pixel comes from a cell with a corner
    # at or below the floor (whose exact value therefore had to be kept)
    assert store.values_kept < maps.numel()
    above = maps > floor[None, :, None, None]
    mixed = F.max_pool2d(above.float().flatten(0, 1)[:, None], 2, stride=1)[:, 0] > 0
    all_above = -F.max_pool2d(-above.float().flatten(0, 1)[:, None], 2, stride=1)[:, 0] > 0
    assert bool((mixed & ~all_above).any())
    assert int(want[1].sum()) > 0
    store.close()


def test_store_refuses_other_batches(tmp_path):
    maps = smooth_maps(0)
    store = MapStore(tmp_path / "m", ["L"])
    store.append("L", maps, torch.arange(6), torch.zeros(5))
    fill = torch.full((5,), -9.0)
    assert store.dense("L", torch.arange(1, 7), (9, 9), fill, "cpu") is None
    assert not store.holds("L", [0, 1, 2])
    assert store.holds("L", list(range(6)))
