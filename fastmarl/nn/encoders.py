"""A small convolutional torso for image observations.

:class:`ImageEncoder` maps one frame per agent to a feature vector:
``(..., A, H, W, C)`` (or the flattened ``(..., A, H*W*C)`` that batched envs carry,
or channels first ``(..., A, C, H, W)``, or ``(..., A, H, W)`` for one channel) to
``(..., A, F)``, any leading dims (``(E,)`` acting, ``(B,)`` or ``(T, B)`` in an update).
All agents' frames go through one convolution batch, never a loop over agents.

The frame is first subsampled by ``downsample`` (every ``downsample``-th row and
column: nearest-neighbour, no averaging, so a 457x120 pistonball frame costs what a
58x15 one does), then converted to float (``uint8`` frames scaled by 1/255 there and
only there: storage keeps the bytes), then convolutions with ReLUs, flatten, one linear
layer with a ReLU. Plain ``Conv2d``/``Linear`` layers and tensor slicing: traceable and
exportable (ONNX).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

Layout = str  # "hwc" | "chw" | "hw"


def image_layout(shape: tuple[int, ...]) -> Layout:
    """Where the channels of an image of ``shape`` are: ``"hwc"`` (last dim <= 4), ``"chw"``
    (first dim <= 4) or ``"hw"`` (2 dims, one channel). ValueError for other shapes."""
    if len(shape) == 2:
        return "hw"
    if len(shape) == 3:
        if shape[-1] <= 4:
            return "hwc"
        if shape[0] <= 4:
            return "chw"
    raise ValueError(f"observation shape {shape} is not an image: expected (H, W), (H, W, C) or (C, H, W) with C <= 4")


def image_hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of an image of ``shape`` in any :func:`image_layout`."""
    layout = image_layout(shape)
    if layout == "hw":
        return shape[0], shape[1], 1
    if layout == "hwc":
        return shape[0], shape[1], shape[2]
    return shape[1], shape[2], shape[0]


def auto_downsample(shape: tuple[int, ...], target: int = 64) -> int:
    """The subsampling stride that brings the larger side of the frame to at most ``target`` pixels."""
    H, W, _ = image_hwc(shape)
    return max(1, math.ceil(max(H, W) / target))


def conv_output_hw(h: int, w: int, kernels: tuple[int, ...], strides: tuple[int, ...]) -> list[tuple[int, int]]:
    """The (height, width) after each convolution (no padding)."""
    out = []
    for k, s in zip(kernels, strides):
        h, w = (h - k) // s + 1, (w - k) // s + 1
        out.append((h, w))
    return out


class ImageEncoder(nn.Module):
    """Conv torso: frames of ``shape`` -> (..., F) features; see the module docstring.

    Args:
        shape: one frame's shape as the env defines it ((H, W, C), (C, H, W) or (H, W)).
        channels, kernels, strides: one entry per convolution.
        downsample: keep every ``downsample``-th row and column first (1: all).
        features: F, the width of the output.
        scale: multiplies the frame after the float conversion (1/255 for ``uint8`` frames).
    """

    def __init__(self, shape: tuple[int, ...], channels: tuple[int, ...], kernels: tuple[int, ...],
                 strides: tuple[int, ...], downsample: int, features: int, scale: float = 1.0 / 255):
        super().__init__()
        if not (len(channels) == len(kernels) == len(strides)) or not channels:
            raise ValueError(f"channels {channels}, kernels {kernels} and strides {strides} need one entry per "
                             "convolution each (the same number, at least one)")
        self.shape, self.layout = tuple(int(d) for d in shape), image_layout(tuple(shape))
        self.frame_size = math.prod(self.shape)
        self.downsample, self.scale, self.out_features = int(downsample), float(scale), int(features)
        H, W, C = image_hwc(self.shape)
        h, w = -(-H // self.downsample), -(-W // self.downsample)
        sizes = conv_output_hw(h, w, kernels, strides)
        if min(min(hw) for hw in sizes) < 1:
            raise ValueError(f"a {H}x{W} frame subsampled by {self.downsample} is {h}x{w}, too small for "
                             f"convolutions with kernels {kernels} and strides {strides} (sizes {sizes}); use "
                             "smaller kernels or strides, or a smaller downsample")
        self.input_hw = (h, w)
        layers: list[nn.Module] = []
        c = C
        for out_c, k, s in zip(channels, kernels, strides):
            conv = nn.Conv2d(c, out_c, k, s)
            nn.init.orthogonal_(conv.weight, math.sqrt(2))
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU()]
            c = out_c
        self.convs = nn.Sequential(*layers)
        flat = c * sizes[-1][0] * sizes[-1][1]
        self.fc = nn.Linear(flat, features)
        nn.init.orthogonal_(self.fc.weight, math.sqrt(2))
        nn.init.zeros_(self.fc.bias)

    def subsample(self, x: Tensor) -> Tensor:
        """(..., *shape) or (..., frame_size) frames, any dtype -> (..., C, h, w) in that dtype: every
        ``downsample``-th row and column, channels first. A fixed function of the frame: an update may
        apply it once to a whole rollout and feed minibatches of the result to :meth:`encode`."""
        nd = len(self.shape)
        if tuple(x.shape[-nd:]) == self.shape:
            lead = x.shape[:-nd]
        elif x.shape[-1] == self.frame_size:
            lead = x.shape[:-1]
        else:
            raise ValueError(f"ImageEncoder expected frames of shape {self.shape} (or flattened, "
                             f"{self.frame_size} values), got a tensor of shape {tuple(x.shape)}")
        x = x.reshape(-1, *self.shape)
        s = self.downsample
        if self.layout == "hwc":  # subsample the bytes first: the float copy is the small frame's
            x = x[:, ::s, ::s, :].permute(0, 3, 1, 2)
        elif self.layout == "chw":
            x = x[:, :, ::s, ::s]
        else:
            x = x[:, None, ::s, ::s]
        return x.contiguous().reshape(*lead, *x.shape[1:])

    def encode(self, x: Tensor) -> Tensor:
        """Subsampled frames (..., C, h, w) (:meth:`subsample`) -> (..., F) float32 features."""
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:]).float()
        if x.shape[0] == 0:
            return x.new_zeros(*lead, self.out_features)
        f = self.convs(x * self.scale if self.scale != 1.0 else x)
        return torch.relu(self.fc(f.flatten(1))).reshape(*lead, self.out_features)

    def forward(self, x: Tensor) -> Tensor:
        """(..., *shape) or (..., frame_size) frames -> (..., F) float32: ``encode(subsample(x))``."""
        return self.encode(self.subsample(x))

    def extra_repr(self) -> str:
        return f"shape={self.shape}, layout={self.layout}, downsample={self.downsample}, input_hw={self.input_hw}"
