"""The one key map between the released `flownet.pkl` and our module names.

Released layout (Practical-RIFE v4.2x `train_log/flownet.pkl`): the state dict of the IFNet
saved from a DistributedDataParallel wrapper, so every key starts with ``module.``; upstream's
own loader strips it. Renames (ours <- released, after the prefix):

    encoder.conv0 / conv1 / conv2 / up      <- encode.cnn0 / cnn1 / cnn2 / cnn3
    blocks.{i}.down0                        <- block{i}.conv0.0.0      (conv of conv+LeakyReLU)
    blocks.{i}.down1                        <- block{i}.conv0.1.0
    blocks.{i}.res.{j}.conv / .beta         <- block{i}.convblock.{j}.conv / .beta
    blocks.{i}.up                           <- block{i}.lastconv.0     (the ConvTranspose2d)

Every tensor is a parameter (weight/bias, and `beta`); there are no buffers. Training-only
modules that some v4 training code declared (`teacher.`, `caltime.`) are the only keys a file may
carry beyond these; they are named here and skipped. Both directions are total on our keys.
"""

from __future__ import annotations

from .config import RIFEConfig

WRAPPER_PREFIX = "module."
TRAINING_ONLY_PREFIXES = ("teacher.", "caltime.")

_ENCODER = (("conv0", "cnn0"), ("conv1", "cnn1"), ("conv2", "cnn2"), ("up", "cnn3"))
_BLOCK = (("down0", "conv0.0.0"), ("down1", "conv0.1.0"), ("up", "lastconv.0"))


def key_map(cfg: RIFEConfig) -> dict[str, str]:
    """Our state-dict key -> the released key without ``module.`` (158 keys for 5 blocks)."""
    out: dict[str, str] = {}
    for ours, up in _ENCODER:
        for p in ("weight", "bias"):
            out[f"encoder.{ours}.{p}"] = f"encode.{up}.{p}"
    for i in range(len(cfg.block_widths)):
        for ours, up in _BLOCK:
            for p in ("weight", "bias"):
                out[f"blocks.{i}.{ours}.{p}"] = f"block{i}.{up}.{p}"
        for j in range(cfg.res_convs):
            for p in ("weight", "bias"):
                out[f"blocks.{i}.res.{j}.conv.{p}"] = f"block{i}.convblock.{j}.conv.{p}"
            out[f"blocks.{i}.res.{j}.beta"] = f"block{i}.convblock.{j}.beta"
    return out


def to_released(cfg: RIFEConfig) -> dict[str, str]:
    """Released key (without prefix) -> ours."""
    return {v: k for k, v in key_map(cfg).items()}
