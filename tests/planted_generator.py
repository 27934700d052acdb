"""A planted generator: unit k of layer ``units`` paints concept k.

Each of the 4 units is a blob at a place drawn from z (present on most samples); the image is
grey, and where a unit's upsampled map is the largest and above 0.3, it has the unit's colour
(red, green, blue, yellow: four of Broden's colour names). So the colors segmenter finds
exactly what each unit does, ablating unit k removes colour k, inserting it adds colour k.
"""

import torch
import torch.nn.functional as F
from torch import nn

COLORS = torch.tensor([[210, 35, 40], [40, 165, 60], [40, 70, 205], [235, 210, 50]],
                      dtype=torch.float32)
NAMES = ["red", "green", "blue", "yellow"]


class Units(nn.Module):
    def forward(self, z):
        z = z.reshape(z.shape[0], 4, 3)
        ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
        cy, cx = torch.sigmoid(z[..., 0]) * 7, torch.sigmoid(z[..., 1]) * 7
        present = (z[..., 2] > -0.3).float()
        d = ((ys - cy[..., None, None]) ** 2 + (xs - cx[..., None, None]) ** 2).sqrt()
        return F.relu(1 - d / 2.5) * present[..., None, None]


class Render(nn.Module):
    def forward(self, maps):
        up = F.interpolate(maps, size=(32, 32), mode="bilinear", align_corners=False)
        best, k = up.max(1)
        rgb = COLORS.to(maps.device)[k].permute(0, 3, 1, 2)
        img = torch.where((best > 0.3)[:, None], rgb, torch.full_like(rgb, 128.0))
        return img / 127.5 - 1


class Planted(nn.Module):
    latent_shape = (12, 1, 1)

    def __init__(self):
        super().__init__()
        self.units = Units()
        self.render = Render()

    def forward(self, z):
        return self.render(self.units(z))


class NoLatent(Planted):
    latent_shape = None


class NotAnImage(Planted):
    def forward(self, z):
        return self.units(z)  # 4 channels of 8x8: not an RGB image


class ToChannelsLast(nn.Module):
    def forward(self, maps):
        return maps.permute(0, 2, 3, 1)  # [B, h, w, C]: a layer with the NHWC layout


class ChannelsLast(Planted):
    """Planted, with the units also seen through an NHWC layer (``last``)."""

    def __init__(self):
        super().__init__()
        self.last = ToChannelsLast()

    def forward(self, z):
        return self.render(self.last(self.units(z)).permute(0, 3, 1, 2))


def build():
    return Planted()


def build_channels_last():
    return ChannelsLast()


def build_no_latent():
    return NoLatent()


def build_not_an_image():
    return NotAnImage()
