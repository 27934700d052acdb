"""Edits checked on the maps themselves, not on what a segmenter sees afterwards.

`ndcore.edit(G, {layer: Ablate(units, region)})` must set exactly the edited units to 0 (or,
for `Insert`, to the value) in exactly the cells the region covers, and leave every other value
bit for bit as the unedited forward computes it; the layers after the edited one must see the
edited maps. The maps are captured here by forward pre-hooks of the test's own on the layer
that follows the edited one, and the expected cells are worked out by hand from the region.
"""

import pytest
import torch
from torch import nn

import ndcore

IMAGE = 16  # the tiny generator's images are 16x16; its layer main.2 is 8x8 (2x2 px a cell)


class TinyGenerator(nn.Module):
    """z [B, 6, 1, 1] -> main.0 (8, 4x4) -> ReLU -> main.2 (6, 8x8) -> in-place ReLU ->
    main.4 (3, 16x16) -> Tanh: a DCGAN in miniature, with an in-place ReLU after the layer
    that is edited (as the real DCGAN has)."""

    latent_shape = (6, 1, 1)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.main = nn.Sequential(
            nn.ConvTranspose2d(6, 8, 4, 1, 0), nn.ReLU(),
            nn.ConvTranspose2d(8, 6, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(6, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z):
        return self.main(z)


@pytest.fixture(scope="module")
def generator():
    return TinyGenerator().eval()


@pytest.fixture(scope="module")
def z():
    return torch.randn(3, 6, 1, 1, generator=torch.Generator().manual_seed(1))


def run(generator, z, edits=None):
    """The image, and a copy of the maps main.3 receives (main.2's output as the rest of the
    generator sees it), with ``edits`` applied through ndcore."""
    seen = {}

    def keep(module, inputs):  # returns None: the module's input stays as it is
        seen["maps"] = inputs[0].detach().clone()  # before the in-place ReLU changes it

    handle = generator.main[3].register_forward_pre_hook(keep)
    try:
        with torch.no_grad():
            if edits is None:
                image = generator(z)
            else:
                with ndcore.edit(generator, edits):
                    image = generator(z)
    finally:
        handle.remove()
    return image, seen["maps"]


def cells_by_hand(region: torch.Tensor, cells: int) -> torch.Tensor:
    """bool [cells, cells]: cell (i, j) is edited when its footprint holds a pixel of the region.
    The footprint of cell i is image rows floor(i*H/h) .. ceil((i+1)*H/h) - 1 (adaptive max
    pooling's window; with H = 2h it is rows 2i and 2i+1)."""
    size = region.shape[0]
    out = torch.zeros(cells, cells, dtype=torch.bool)
    for i in range(cells):
        r0, r1 = (i * size) // cells, -((-(i + 1) * size) // cells)
        for j in range(cells):
            c0, c1 = (j * size) // cells, -((-(j + 1) * size) // cells)
            out[i, j] = bool(region[r0:r1, c0:c1].any())
    return out


def painted_region() -> torch.Tensor:
    """An L painted at image resolution: rows 3..9 of columns 1..4, and row 12 of columns 1..13."""
    region = torch.zeros(IMAGE, IMAGE, dtype=torch.bool)
    region[3:10, 1:5] = True
    region[12, 1:14] = True
    return region


def assert_untouched(edited, plain, units, inside=None):
    """Every value outside (units x inside-cells) is bit-equal to the unedited forward's."""
    others = [u for u in range(plain.shape[1]) if u not in units]
    assert torch.equal(edited[:, others], plain[:, others]), "units that were not edited changed"
    if inside is not None:
        outside = ~inside
        assert torch.equal(edited[:, units][..., outside], plain[:, units][..., outside]), \
            "edited units changed outside the region"


def test_ablate_everywhere_sets_the_units_to_zero_and_nothing_else(generator, z):
    plain_image, plain = run(generator, z)
    units = [1, 4]
    assert (plain[:, units] != 0).float().mean() > 0.9, "premise: the units are active"
    image, edited = run(generator, z, {"main.2": ndcore.Ablate(units)})
    assert torch.equal(edited[:, units], torch.zeros_like(edited[:, units]))
    assert_untouched(edited, plain, units)
    assert not torch.equal(image, plain_image), "the layers after main.2 saw no edit"
    # the hooks are gone after the block: the generator is unedited again
    assert torch.equal(run(generator, z)[0], plain_image)


def test_ablate_in_a_region_only_touches_the_cells_it_covers(generator, z):
    region = painted_region()
    inside = cells_by_hand(region, 8)
    assert 0 < inside.sum() < 64
    _, plain = run(generator, z)
    units = [0, 3]
    assert (plain[:, units][..., inside] != 0).all(), "premise: nonzero before the edit"
    _, edited = run(generator, z, {"main.2": ndcore.Ablate(units, region)})
    assert torch.equal(edited[:, units][..., inside], torch.zeros(3, 2, int(inside.sum())))
    assert_untouched(edited, plain, units, inside)


def test_insert_in_a_region_sets_exactly_the_value(generator, z):
    region = painted_region()
    inside = cells_by_hand(region, 8)
    _, plain = run(generator, z)
    units = [5, 2]
    _, edited = run(generator, z, {"main.2": ndcore.Insert(units, region, value=2.5)})
    assert torch.equal(edited[:, units][..., inside], torch.full((3, 2, int(inside.sum())), 2.5))
    assert_untouched(edited, plain, units, inside)


def test_insert_one_value_per_unit_in_the_order_given(generator, z):
    _, plain = run(generator, z)
    _, edited = run(generator, z, {"main.2": ndcore.Insert([3, 0], value=[1.5, -0.1])})
    assert torch.equal(edited[:, 3], torch.full_like(edited[:, 3], 1.5))
    # -0.1 as float32, the maps' dtype
    assert torch.equal(edited[:, 0], torch.full_like(edited[:, 0], torch.tensor(-0.1).item()))
    assert_untouched(edited, plain, [3, 0])


def test_edits_at_two_layers_reach_the_image_as_a_hand_written_forward(generator, z):
    """The README's two-layer edit; the later layer sees the earlier one's edit."""
    region = painted_region()
    edits = {"main.2": ndcore.Ablate([1, 4], region), "main.0": ndcore.Insert([2], value=4.0)}
    image, _ = run(generator, z, edits)
    x = z
    with torch.no_grad():
        for index, layer in enumerate(generator.main):
            x = layer(x)
            if index == 0:
                x = x.clone()
                x[:, 2] = 4.0  # main.0 is 4x4 and edited everywhere
            if index == 2:
                x = x.clone()
                x[:, [1, 4]] = torch.where(cells_by_hand(region, 8), 0.0, x[:, [1, 4]])
    assert torch.equal(image, x)
    assert not torch.equal(image, run(generator, z)[0])


def test_a_region_whose_size_is_no_multiple_of_the_layer(generator):
    """12x12 pixels over 8x8 cells: footprints overlap (cell i covers rows floor(1.5 i) ..
    ceil(1.5 (i + 1)) - 1), and a cell is edited when its footprint holds any painted pixel.
    An edit is a function of the maps: called directly here."""
    maps = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    region = torch.zeros(12, 12, dtype=torch.bool)
    # pixel (4, 4) lies in the overlapping footprints of cells 2 and 3 of both axes (4 cells);
    # pixel (9, 2) only in cell (6, 1)
    region[4, 4] = region[9, 2] = True
    inside = cells_by_hand(region, 8)
    assert inside.sum() == 5 and inside[2:4, 2:4].all() and inside[6, 1]
    edited = ndcore.Ablate([1], region)(maps)
    assert torch.equal(edited[:, 1][..., inside], torch.zeros(2, 5))
    assert_untouched(edited, maps, [1], inside)
