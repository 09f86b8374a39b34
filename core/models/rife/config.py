"""Typed architecture of RIFE v4.x's IFNet (Practical-RIFE, MIT) and the released versions.

The v4.2x networks differ only in sizes, so one dataclass describes them:

head_channels:  feature channels the shared image encoder (`Head`) gives each frame
                (4 in 4.25 / 4.26, 16 in 4.26.heavy).
block_widths:   channels of the five flow blocks, coarse to fine (192, 128, 96, 64, 32).
block_scales:   downscale of each block's input at `scale` = 1 (16, 8, 4, 2, 1); a user `scale`
                s divides them (0.5 for 4K input halves the work of every block).
res_convs:      residual 3x3 convolutions per block (8).
block_out:      channels a block predicts at full resolution: 4 flow (t->0 and t->1, in pixels),
                1 fusion-mask logit, and the rest features passed on to the next block (13).
pad_multiple:   input sides are zero-padded (right/bottom) to a multiple of
                max(pad_multiple, pad_multiple / scale) before the network, as upstream does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RIFEConfig:
    version: str = "4.25"
    head_channels: int = 4
    head_hidden: int = 16
    block_widths: tuple[int, ...] = (192, 128, 96, 64, 32)
    block_scales: tuple[float, ...] = (16.0, 8.0, 4.0, 2.0, 1.0)
    res_convs: int = 8
    block_out: int = 13
    pad_multiple: int = 64

    def __post_init__(self) -> None:
        if len(self.block_widths) != len(self.block_scales):
            raise ValueError("block_widths and block_scales must have one entry per flow block")
        if self.block_out < 6:
            raise ValueError("a block predicts 4 flow channels, 1 mask logit and at least 1 feature")

    @property
    def feature_channels(self) -> int:
        """Features a block hands to the next one (block_out - 4 flow - 1 mask)."""
        return self.block_out - 5

    @property
    def first_in(self) -> int:
        """Input channels of the first block: both images, the timestep plane, both encodings."""
        return 3 + 3 + 1 + 2 * self.head_channels

    @property
    def refine_in(self) -> int:
        """Input channels of a later block: both warped images, both warped encodings, timestep,
        the previous mask logit and features, and the current flow (4)."""
        return 3 + 3 + 2 * self.head_channels + 1 + 1 + self.feature_channels + 4


# Released versions with public weights (Practical-RIFE README, "Trained Model").
PRESETS: dict[str, RIFEConfig] = {
    "4.25": RIFEConfig("4.25", head_channels=4),
    "4.26": RIFEConfig("4.26", head_channels=4),
    "4.26.heavy": RIFEConfig("4.26.heavy", head_channels=16),
}


def get_preset(name: str) -> RIFEConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown RIFE version {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
