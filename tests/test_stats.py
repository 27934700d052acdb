"""Exact streaming thresholds against numpy.quantile; top-k images; merge and state_dict."""

import numpy as np
import pytest
import torch

from ndcore.engine.statistics.tail import TopTail, tail_size
from ndcore.engine.statistics.topk import TopKImages
from ndcore.data.probe import ProbeBatch


def batch_of(indices):
    n = len(indices)
    return ProbeBatch(indices, torch.zeros(n, 0, 0, 0, dtype=torch.uint8),
                      torch.zeros(n, 0, 1, 1, dtype=torch.int32), torch.zeros(n, 0, dtype=torch.int64),
                      torch.zeros(n, 0, dtype=torch.bool))


def stream(values: np.ndarray, q: float, chunks: int) -> TopTail:
    tail = TopTail(values.shape[0], tail_size(values.shape[1], q))
    for part in np.array_split(values, chunks, axis=1):
        tail.add_values(torch.from_numpy(np.ascontiguousarray(part)))
    return tail


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("q", [0.005, 0.02, 0.3])
def test_threshold_matches_numpy_quantile(seed, q):
    rng = np.random.default_rng(seed)
    units, n = int(rng.integers(1, 9)), int(rng.integers(1, 5000))
    x = rng.gamma(2.0, size=(units, n)).astype(np.float32)
    got = stream(x, q, int(rng.integers(1, 12))).quantile(q).numpy()
    np.testing.assert_allclose(got, np.quantile(x, 1 - q, axis=1), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_threshold_with_ties(seed):
    rng = np.random.default_rng(100 + seed)
    x = rng.integers(0, 4, size=(5, 3000)).astype(np.float32)  # heavy ties
    x[0] = 2.0  # a constant unit
    x[1, :] = 0.0
    x[1, :7] = 1.0  # top values: exactly at the tail boundary
    for q in (0.005, 0.001, 0.25):
        got = stream(x, q, 7).quantile(q).numpy()
        np.testing.assert_allclose(got, np.quantile(x, 1 - q, axis=1), rtol=0, atol=1e-6)


def test_tail_is_bounded_and_merge_equals_single_stream():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 20000)).astype(np.float32)
    q = 0.005
    keep = tail_size(x.shape[1], q)
    a = TopTail(4, keep)
    b = TopTail(4, keep)
    for part in np.array_split(x[:, :9000], 5, axis=1):
        a.add_values(torch.from_numpy(np.ascontiguousarray(part)))
    for part in np.array_split(x[:, 9000:], 5, axis=1):
        b.add_values(torch.from_numpy(np.ascontiguousarray(part)))
        assert b._tail.shape[1] + b._pending_width <= 2 * keep + 4000  # tail + one batch
    restored = TopTail(4, keep)
    restored.load_state_dict(a.state_dict())
    restored.merge(b)
    np.testing.assert_allclose(restored.quantile(q).numpy(), np.quantile(x, 1 - q, axis=1), rtol=1e-6)


def test_quantile_refuses_too_small_tail():
    tail = TopTail(1, 3)
    tail.add_values(torch.arange(10000, dtype=torch.float32).view(1, -1))
    with pytest.raises(ValueError, match="needs"):
        tail.quantile(0.01)


def test_topk_images_keeps_best_maps():
    rng = np.random.default_rng(3)
    acts = torch.from_numpy(rng.normal(size=(23, 3, 4, 5)).astype(np.float32))
    top = TopKImages(3, 4)
    for start in range(0, 23, 6):
        top.add(acts[start:start + 6], batch_of(torch.arange(start, min(start + 6, 23))))
    peaks = acts.amax(dim=(2, 3))  # [N, U]
    for u in range(3):
        expected = torch.argsort(peaks[:, u], descending=True)[:4]
        assert top.indices[u].tolist() == expected.tolist()
        for j, img in enumerate(expected.tolist()):
            torch.testing.assert_close(top.maps[u, j].float(), acts[img, u].half().float())


def test_negative_zero_is_stored_as_zero():
    """Equal values must have equal bits, or merged states would depend on the shard order."""
    a, b = TopTail(1, 3), TopTail(1, 3)
    a.add_values(torch.tensor([[-0.0, 1.0, 0.0, -1.0]]))
    b.add_values(torch.tensor([[0.0, -1.0, -0.0, 1.0]]))
    sa, sb = a.state_dict()["tail"], b.state_dict()["tail"]
    assert sa.numpy().tobytes() == sb.numpy().tobytes()
    assert not torch.signbit(sa).any()
