"""The drawing side, without the worker: edge sets to rings, filling, pooling, label planes."""

import numpy as np
import pytest

from ndcore_mediapipe import parts
from ndcore_mediapipe.parts import (LABELS, NUMBER, PLANES, Outline, PartMaker, compose,
                                    convex_hull, fill, join_paths, pool_mode, vocabulary)


def test_fill_takes_pixels_whose_centre_is_inside():
    square = np.array([[2.0, 1.0], [6.0, 1.0], [6.0, 4.0], [2.0, 4.0]])
    m = fill([square], (8, 8))
    expected = np.zeros((8, 8), bool)
    expected[1:4, 2:6] = True  # centres 1.5..3.5 and 2.5..5.5
    np.testing.assert_array_equal(m, expected)
    # a shift of less than half a pixel keeps the same centres
    np.testing.assert_array_equal(fill([square + 0.4], (8, 8)), expected)
    # more than half a pixel: x 2.6..6.6 holds the centres 3.5..6.5, y 1.6..4.6 holds 2.5..4.5
    shifted = np.zeros((8, 8), bool)
    shifted[2:5, 3:7] = True
    np.testing.assert_array_equal(fill([square + 0.6], (8, 8)), shifted)
    # the other orientation of the ring fills the same pixels
    np.testing.assert_array_equal(fill([square[::-1]], (8, 8)), expected)


def test_fill_area_and_even_odd_rings():
    t = np.array([[10.0, 10.0], [190.0, 30.0], [60.0, 180.0]])
    area = parts.polygon_area(t)
    assert abs(fill([t], (200, 200)).sum() - area) < 0.02 * area
    outer = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]])
    inner = np.array([[25.0, 25.0], [75.0, 25.0], [75.0, 75.0], [25.0, 75.0]])
    ring = fill([outer, inner], (100, 100))  # two rings together: a hole
    assert ring.sum() == 100 * 100 - 50 * 50
    assert not ring[50, 50] and ring[10, 10]
    # outside the image: clipped, no error
    assert fill([outer + 1000], (10, 10)).sum() == 0


POINTS = np.array([[0, 0], [10, 0], [10, 10], [0, 10], [5, -5], [5, 20], [20, 5]], float)


def test_rings_paths_and_graphs_from_edge_sets():
    cycle = Outline.from_edges("c", [(0, 1), (2, 3), (1, 2), (3, 0)])
    assert cycle.rings and sorted(cycle.rings[0]) == [0, 1, 2, 3]
    ring = cycle.rings[0]
    for a, b in zip(ring, ring[1:] + ring[:1]):  # consecutive vertices share an edge
        assert {a, b} in [{0, 1}, {1, 2}, {2, 3}, {3, 0}]
    two = Outline.from_edges("lips", [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)])
    assert len(two.rings) == 2
    # an eyebrow: two open lines (upper 0-1, lower 3-2) joined end to end into one ring
    brow = Outline.from_edges("brow", [(0, 1), (3, 2)])
    assert brow.paths and not brow.rings
    ring = join_paths(brow.paths, POINTS)
    assert sorted(ring) == [0, 1, 2, 3]
    assert fill(brow.polygons(POINTS), (12, 12)).sum() == 100  # the full square, no bow tie
    # both lines drawn the same way (like mediapipe's brows, outer to inner): the second one
    # must be turned round, or the ring is a bow tie
    same_way = Outline.from_edges("brow", [(0, 1), (2, 3)])
    pts = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], float)
    assert join_paths(same_way.paths, pts) == [0, 1, 3, 2]
    assert fill(same_way.polygons(pts), (12, 12)).sum() == 100
    # a graph with a branch (like FACEMESH_NOSE): its convex hull
    nose = Outline.from_edges("nose", [(4, 0), (0, 1), (1, 4), (4, 5), (0, 6)])
    assert nose.hull == [0, 1, 4, 5, 6]
    hull = convex_hull(POINTS[nose.hull])
    assert sorted(map(tuple, hull.tolist())) == [(0, 0), (5, -5), (5, 20), (20, 5)]  # (10, 0) inside


def test_pool_mode_majority_and_priority():
    hi = np.zeros((4, 4), np.int16)
    hi[:2, :2] = [[7, 7], [7, 4]]      # block (0,0): 3 x label 7
    hi[:2, 2:] = [[9, 9], [4, 4]]      # block (0,1): tie 9 vs 4 -> the earlier in order (9)
    hi[2:, :2] = [[0, 0], [0, 4]]      # block (1,0): mostly nothing -> 0
    hi[2:, 2:] = [[0, 0], [4, 4]]      # block (1,1): tie with nothing -> the label
    out = pool_mode(hi, 2, [9, 7, 4])
    np.testing.assert_array_equal(out, [[7, 9], [0, 4]])


def test_vocabulary_and_planes():
    from ndcore.data.validate import check_vocabulary

    vocab = vocabulary()
    assert check_vocabulary(vocab) is None
    assert vocab.label_names[1:] == [n for n, _ in parts.LABELS]
    assert "hair (approx.)" in vocab.label_names
    assert vocab.num_labels == 11 and vocab.categories == ["region", "part"]
    seen = [n for names, _ in PLANES for n in names]
    assert sorted(seen) == sorted(vocab.label_names[1:])  # every label in exactly one plane
    for names, cat in PLANES:
        assert all(vocab.primary[NUMBER[n]] == cat for n in names)


def test_planes_follow_the_documented_priorities():
    """Where every mask covers every pixel, each plane shows its highest-priority label; taking
    labels away one by one walks down the priority list (the order README.md documents)."""
    documented = [["face", "hair (approx.)", "background"],
                  ["mouth interior", "lips", "eyes", "eyebrows", "nose", "skin"],
                  ["irises"]]
    full = {name: np.ones((8, 8), bool) for name, _ in LABELS}
    for p, order in enumerate(documented):
        masks = dict(full)
        for name in order:
            planes = compose(masks, 4)
            assert planes.shape == (3, 2, 2)
            assert (planes[p] == NUMBER[name]).all(), (p, name, planes[p])
            masks[name] = np.zeros((8, 8), bool)
        assert (compose(masks, 4)[p] == 0).all()
    # one label per plane, in the categories the planes declare
    assert [names for names, _ in PLANES] == documented


def test_part_maker_refuses_lips_that_are_not_two_rings():
    hello = {"edges": {"lips": [(0, 1), (1, 2), (2, 0)], "face_oval": [(0, 1), (1, 2), (2, 0)]},
             "irises": {}}
    with pytest.raises(ValueError, match="FACEMESH_LIPS gave 1 rings, expected 2"):
        PartMaker(hello)
