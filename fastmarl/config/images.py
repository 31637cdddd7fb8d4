"""Image observations: the encoder settings of the PPO family and the rules that pick them.

``PPOConfig.images`` (:class:`ImageEncoderConfig`) says which torso a group's networks get:
``encoder="auto"`` gives a group whose observations are images (an image-shaped Box,
HWC or CHW, ``uint8`` or float; :attr:`~fastmarl.envs.api.GroupSpec.image_observations`)
the convolutional torso of :class:`fastmarl.nn.encoders.ImageEncoder`, every other group
the MLP; ``"cnn"`` insists (an error for a group without images), ``"mlp"`` flattens
images into MLP inputs (the old behaviour: slow and memory-hungry).

``IMAGE_DEFAULTS`` are the run settings an env with image observations gets when the
run leaves them at their general defaults (200 envs and 100 evaluation episodes suit a
vectorised MPE, not a PettingZoo env drawing frames): see :func:`image_run_defaults`.
Learners without a CNN torso refuse image observations (:func:`refuse_images`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fastmarl.config.base import ConfigError, check_int
from fastmarl.envs.api import EnvSpec, GroupSpec
from fastmarl.nn.encoders import auto_downsample, conv_output_hw, image_hwc

# settings an env with image observations gets in place of the general defaults (see image_run_defaults)
IMAGE_DEFAULTS = {"num_envs": 8, "eval_episodes": 10}


@dataclass
class ImageEncoderConfig:
    """The convolutional torso for image observations (shapes (E, A, H, W, C) -> (E, A, F))."""

    encoder: Literal["auto", "mlp", "cnn"] = "auto"
    """auto: a CNN for groups whose observations are images, an MLP otherwise; cnn: a CNN (error without images);
    mlp: images flattened into MLP inputs"""
    cnn_channels: tuple[int, ...] = (8, 16)
    """output channels of each convolution"""
    cnn_kernels: tuple[int, ...] = (4, 4)
    """kernel size of each convolution"""
    cnn_strides: tuple[int, ...] = (2, 2)
    """stride of each convolution"""
    cnn_downsample: int = 0
    """keep every n-th row and column of the frame before the convolutions; 0: auto, the smallest n that brings
    the larger side to 64 pixels or fewer (pistonball's 457x120: 8)"""
    cnn_features: int = 64
    """F: features per frame after the convolutions and one linear layer; the actor body and the critic read these"""

    def __post_init__(self):  # a saved config.json holds lists: the same settings as tuples
        for name in ("cnn_channels", "cnn_kernels", "cnn_strides"):
            if isinstance(getattr(self, name), list):
                setattr(self, name, tuple(getattr(self, name)))


def uses_cnn(cfg: ImageEncoderConfig, group: GroupSpec) -> bool:
    """Whether ``group``'s networks get the CNN torso under ``cfg``."""
    return cfg.encoder == "cnn" or (cfg.encoder == "auto" and group.image_observations)


def frame_shape(group: GroupSpec) -> tuple[int, ...]:
    """One agent's frame as the env defines it (before any flattening)."""
    return tuple(group.source_shape or group.observation_space.shape)


def frame_scale(group: GroupSpec) -> float:
    """What the encoder multiplies a frame by: 1/255 for ``uint8`` frames, else 1 (float frames as they come)."""
    return 1.0 / 255 if np.dtype(group.observation_space.dtype) == np.uint8 else 1.0


def downsample_of(cfg: ImageEncoderConfig, group: GroupSpec) -> int:
    """``cfg.cnn_downsample``, or its auto value for ``group``'s frames."""
    return cfg.cnn_downsample or auto_downsample(frame_shape(group))


def obs_itemsize(group: GroupSpec) -> int:
    """Bytes per observation value as PPO's rollout stores it: 1 for ``uint8`` (frames), else 4 (float32)."""
    return 1 if np.dtype(group.observation_space.dtype) == np.uint8 else 4


CNN_FIELDS = ("cnn_channels", "cnn_kernels", "cnn_strides", "cnn_downsample", "cnn_features")


def check_images(cfg: ImageEncoderConfig, spec: EnvSpec, where: str = "ppo.images") -> dict[str, bool]:
    """Validate ``cfg`` against ``spec``: group -> uses the CNN torso. ConfigError says what to change."""
    if cfg.encoder not in ("auto", "mlp", "cnn"):
        raise ConfigError(f"{where}.encoder must be 'auto', 'mlp' or 'cnn', got {cfg.encoder!r}", (f"{where}.encoder",))
    cnn = {g.name: uses_cnn(cfg, g) for g in spec.groups.values()}
    if cfg.encoder == "cnn":
        flat = [f"{g.name!r} {frame_shape(g)}" for g in spec.groups.values() if not g.image_observations]
        if flat:
            raise ConfigError(f"{where}.encoder='cnn' needs image observations ((H, W, C), (C, H, W) or (H, W), "
                              f"C <= 4, H and W >= 8), but {spec.env_id}'s groups {', '.join(flat)} are not images; "
                              "use encoder 'auto' (a CNN only where there are images)", (f"{where}.encoder",))
    if not any(cnn.values()):
        changed = [f"{where}.{k}" for k in CNN_FIELDS if getattr(cfg, k) != getattr(ImageEncoderConfig, k)]
        if changed:
            why = ("encoder='mlp'" if cfg.encoder == "mlp" else f"{spec.env_id} has no image observations")
            raise ConfigError(f"{', '.join(changed)} configure the CNN torso, but no group uses one ({why}); leave "
                              "them at their defaults", tuple(changed))
        return cnn
    for name in ("cnn_channels", "cnn_kernels", "cnn_strides"):
        v = getattr(cfg, name)
        if not isinstance(v, (tuple, list)) or not v:
            raise ConfigError(f"{where}.{name} must be a non-empty list of integers, got {v!r}", (f"{where}.{name}",))
        for x in v:
            check_int(f"{where}.{name}", x, 1)
    if not len(cfg.cnn_channels) == len(cfg.cnn_kernels) == len(cfg.cnn_strides):
        raise ConfigError(f"{where}.cnn_channels, cnn_kernels and cnn_strides need one entry per convolution each, "
                          f"got {len(cfg.cnn_channels)}, {len(cfg.cnn_kernels)} and {len(cfg.cnn_strides)} entries",
                          (f"{where}.cnn_channels", f"{where}.cnn_kernels", f"{where}.cnn_strides"))
    check_int(f"{where}.cnn_downsample", cfg.cnn_downsample, 0)
    check_int(f"{where}.cnn_features", cfg.cnn_features, 1)
    for g in spec.groups.values():
        if not cnn[g.name]:
            continue
        H, W, _ = image_hwc(frame_shape(g))
        s = downsample_of(cfg, g)
        h, w = -(-H // s), -(-W // s)
        sizes = conv_output_hw(h, w, tuple(cfg.cnn_kernels), tuple(cfg.cnn_strides))
        if min(min(hw) for hw in sizes) < 1:
            raise ConfigError(f"group {g.name!r}: a {H}x{W} frame subsampled by {s} is {h}x{w}, too small for "
                              f"kernels {tuple(cfg.cnn_kernels)} with strides {tuple(cfg.cnn_strides)} (sizes "
                              f"{sizes}); use smaller kernels or strides, or a smaller --cnn-downsample",
                              (f"{where}.cnn_kernels", f"{where}.cnn_strides", f"{where}.cnn_downsample"))
    return cnn


def encoder_activation_floats(cfg: ImageEncoderConfig, group: GroupSpec) -> int:
    """Floats one frame's pass through the CNN keeps for its backward (input, every convolution's output)."""
    H, W, C = image_hwc(frame_shape(group))
    s = downsample_of(cfg, group)
    h, w = -(-H // s), -(-W // s)
    sizes = conv_output_hw(h, w, tuple(cfg.cnn_kernels), tuple(cfg.cnn_strides))
    return h * w * C + sum(c * a * b for c, (a, b) in zip(cfg.cnn_channels, sizes)) + cfg.cnn_features


def encoder_parameters(cfg: ImageEncoderConfig, group: GroupSpec) -> int:
    """Parameters of the CNN torso of ``group`` (its convolutions and its linear layer)."""
    H, W, C = image_hwc(frame_shape(group))
    s = downsample_of(cfg, group)
    sizes = conv_output_hw(-(-H // s), -(-W // s), tuple(cfg.cnn_kernels), tuple(cfg.cnn_strides))
    n, c = 0, C
    for out_c, k in zip(cfg.cnn_channels, cfg.cnn_kernels):
        n += out_c * (c * k * k + 1)
        c = out_c
    return n + (c * sizes[-1][0] * sizes[-1][1] + 1) * cfg.cnn_features


def refuse_images(algo: str, spec: EnvSpec) -> None:
    """ConfigError for a learner without a CNN torso on an env with image observations."""
    images = {g.name: frame_shape(g) for g in spec.groups.values() if g.image_observations}
    if images:
        raise ConfigError(f"{algo} has no convolutional encoder, but {spec.env_id}'s observations are images "
                          f"({images}); flattened into MLP inputs they would be slow and memory-hungry: use "
                          "--algo mappo or ippo (a CNN torso, frames stored as uint8)")


def image_run_defaults(cfg, spec: EnvSpec, uses: dict[str, bool]) -> tuple[object, dict[str, tuple[int, int]]]:
    """``cfg`` with ``IMAGE_DEFAULTS`` in place of the settings it leaves at their general defaults, when a
    group gets the CNN (``uses``: :func:`check_images`); and what changed (name -> (old, new))."""
    if not any(uses.values()):
        return cfg, {}
    defaults = {f.name: f.default for f in dataclasses.fields(type(cfg))}
    changes = {k: (getattr(cfg, k), v) for k, v in IMAGE_DEFAULTS.items()
               if hasattr(cfg, k) and getattr(cfg, k) == defaults.get(k) and getattr(cfg, k) != v}
    return (dataclasses.replace(cfg, **{k: new for k, (_, new) in changes.items()}) if changes else cfg), changes
