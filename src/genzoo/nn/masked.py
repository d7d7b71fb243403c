"""Causal (masked) convolutions for autoregressive image models.

Pixels are generated in raster order (row by row, left to right) and, within
a pixel, channel by channel (R before G before B). A network over the whole
image stays autoregressive if the features at pixel i depend only on input
pixels before i; these blocks guarantee that by construction.

Channels: hidden features are split into one group per data channel,
interleaved (feature f belongs to group ``f % data_channels``). At the
centre tap, features of group g may read groups < g (mask type "A", the
first layer, which must not see the pixel it predicts) or groups <= g (type
"B", later layers, whose centre features already exclude that pixel). With
one data channel this is the familiar rule: A drops the centre tap, B keeps
it. Interleaving keeps the groups intact when a gated layer splits its
features in halves (``chunk(2)``), provided the width is a multiple of the
number of data channels.

Two designs live here:

* ``MaskedConv2d`` with a square kernel, stacked as in PixelCNN
  (van den Oord et al., 2016a). Stacking masked kxk kernels leaves a *blind
  spot*: pixels above and to the right of the target that no path reaches.
* ``GatedLayer``: the vertical and horizontal stacks of Gated PixelCNN
  (van den Oord et al., 2016b). The vertical stack sees every pixel in the
  rows above (a k/2+1 x k kernel) and feeds the horizontal stack, which sees
  the pixels to the left in the current row, through a one-row down-shift.
  Together they cover every earlier pixel: no blind spot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nn.dropout import batch_dropout

MASK_TYPES = ("A", "B")


def channel_groups(features: int, data_channels: int) -> torch.Tensor:
    """The data channel each of ``features`` features belongs to (interleaved: f % data_channels)."""
    return torch.arange(features) % data_channels


def causal_mask(out_features: int, in_features: int, kernel_size: tuple[int, int], centre: tuple[int, int],
                mask_type: str, data_channels: int = 1) -> torch.Tensor:
    """A (out, in, kh, kw) 0/1 mask: taps before ``centre`` in raster order are open, taps after it
    closed, and the centre tap open according to the channel groups and ``mask_type``."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    kh, kw = kernel_size
    ch, cw = centre
    mask = torch.zeros(out_features, in_features, kh, kw)
    mask[:, :, :ch, :] = 1  # rows above the centre
    mask[:, :, ch, :cw] = 1  # left of the centre in its row
    out_group = channel_groups(out_features, data_channels)[:, None]
    in_group = channel_groups(in_features, data_channels)[None, :]
    open_centre = in_group < out_group if mask_type == "A" else in_group <= out_group
    mask[:, :, ch, cw] = open_centre.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A convolution whose output at a pixel reads only earlier pixels (see ``causal_mask``).

    ``centre`` is the kernel tap aligned with the output pixel (default: the middle); the input is
    padded so that the output has the input's size. A horizontal-stack kernel (1, k//2+1) with its
    centre at the right end is a MaskedConv2d too.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int], mask_type: str,
                 data_channels: int = 1, centre: tuple[int, int] | None = None, bias: bool = True):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        super().__init__(in_features, out_features, (kh, kw), bias=bias)
        ch, cw = centre if centre is not None else (kh // 2, kw // 2)
        if not (0 <= ch < kh and 0 <= cw < kw):
            raise ValueError(f"centre {centre} lies outside the {kh}x{kw} kernel")
        self.mask_type = mask_type
        self.padding_lrtb = (cw, kw - 1 - cw, ch, kh - 1 - ch)  # F.pad order: left, right, top, bottom
        # Not persistent: the mask follows from the config, so checkpoints hold only learned weights.
        self.register_buffer("mask", causal_mask(out_features, in_features, (kh, kw), (ch, cw), mask_type,
                                                 data_channels), persistent=False)
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, self.padding_lrtb), self.weight * self.mask, self.bias)


class VerticalConv2d(nn.Conv2d):
    """The vertical stack's convolution: output row r reads rows r-k//2 .. r, all k columns around.

    It reads the current row, so its output must be shifted down one row (``shift_down``) before
    anything that predicts row r may use it.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int):
        super().__init__(in_features, out_features, (kernel_size // 2 + 1, kernel_size))
        half = kernel_size // 2
        self.padding_lrtb = (half, half, half, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.padding_lrtb))


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (zeros enter at the top): row r then holds what row r-1 held."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def gate(h: torch.Tensor) -> torch.Tensor:
    """The gated activation tanh(a) * sigmoid(b) on the two halves of the features."""
    a, b = h.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def condition_bias(projection: nn.Linear | None, cond: torch.Tensor | None) -> torch.Tensor | float:
    """A per-example bias (N, F, 1, 1) from a condition vector, or 0 for unconditional models."""
    if projection is None or cond is None:
        return 0.0
    return projection(cond)[:, :, None, None]


class MaskedResidualBlock(nn.Module):
    """PixelCNN's residual block: x + 1x1(drop(act(kxk_B(act(x)) + cond))), all masked type B."""

    def __init__(self, features: int, kernel_size: int, data_channels: int = 1, cond_dim: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        self.conv = MaskedConv2d(features, features, kernel_size, "B", data_channels)
        self.mix = MaskedConv2d(features, features, 1, "B", data_channels)
        self.cond = nn.Linear(cond_dim, features, bias=False) if cond_dim else None
        self.dropout = dropout

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = F.elu(self.conv(F.elu(x)) + condition_bias(self.cond, cond))
        return x + self.mix(batch_dropout(h, self.dropout, self.training))


class GatedLayer(nn.Module):
    """One layer of Gated PixelCNN's two stacks.

    vertical:   v' = drop(gate(V(v) + cond))                       (V: ``VerticalConv2d``)
    horizontal: h' = h + 1x1(gate(H(h) + 1x1(shift_down(V(v))) + cond))   (H: masked 1 x k//2+1)

    The first layer reads the image in both stacks, masks H with type A and has no residual.
    """

    def __init__(self, in_features: int, features: int, kernel_size: int, first: bool, data_channels: int = 1,
                 cond_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.first = first
        half = kernel_size // 2
        self.vertical = VerticalConv2d(in_features, 2 * features, kernel_size)
        self.horizontal = MaskedConv2d(in_features, 2 * features, (1, half + 1), "A" if first else "B",
                                       data_channels, centre=(0, half))
        # Vertical features (shifted) come strictly from rows above: every group may read all of them.
        self.vertical_to_horizontal = nn.Conv2d(2 * features, 2 * features, 1)
        self.horizontal_out = MaskedConv2d(features, features, 1, "B", data_channels)
        self.cond = nn.Linear(cond_dim, 4 * features, bias=False) if cond_dim else None
        self.dropout = dropout

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        bias = condition_bias(self.cond, cond)
        bias_v, bias_h = bias.chunk(2, dim=1) if torch.is_tensor(bias) else (0.0, 0.0)
        v_pre = self.vertical(v)
        h_pre = self.horizontal(h) + self.vertical_to_horizontal(shift_down(v_pre))
        v_out = batch_dropout(gate(v_pre + bias_v), self.dropout, self.training)
        h_new = self.horizontal_out(batch_dropout(gate(h_pre + bias_h), self.dropout, self.training))
        return v_out, h_new if self.first else h + h_new
