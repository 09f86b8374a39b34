"""The one key map between our FastDVDnet and the released `model.pth`.

The released file is a plain state dict saved from an `nn.DataParallel` model, so every key
starts with `module.`; `checkpoint_key_map()` maps our parameter names to those keys without it.
"""

from __future__ import annotations

# Our module path inside one DenoisingBlock -> the upstream one (`nn.Sequential` indices:
# in upstream's sequences a ReLU sits at every third position, hence 0/1 then 3/4).
_BLOCK_CONV_NORM: tuple[tuple[str, str, str], ...] = (
    # (ours, upstream conv, upstream BatchNorm)
    ("input.frames", "inc.convblock.0", "inc.convblock.1"),
    ("input.merge", "inc.convblock.3", "inc.convblock.4"),
    ("down1.reduce", "downc0.convblock.0", "downc0.convblock.1"),
    ("down1.body.conv1", "downc0.convblock.3.convblock.0", "downc0.convblock.3.convblock.1"),
    ("down1.body.conv2", "downc0.convblock.3.convblock.3", "downc0.convblock.3.convblock.4"),
    ("down2.reduce", "downc1.convblock.0", "downc1.convblock.1"),
    ("down2.body.conv1", "downc1.convblock.3.convblock.0", "downc1.convblock.3.convblock.1"),
    ("down2.body.conv2", "downc1.convblock.3.convblock.3", "downc1.convblock.3.convblock.4"),
    ("up2.body.conv1", "upc2.convblock.0.convblock.0", "upc2.convblock.0.convblock.1"),
    ("up2.body.conv2", "upc2.convblock.0.convblock.3", "upc2.convblock.0.convblock.4"),
    ("up1.body.conv1", "upc1.convblock.0.convblock.0", "upc1.convblock.0.convblock.1"),
    ("up1.body.conv2", "upc1.convblock.0.convblock.3", "upc1.convblock.0.convblock.4"),
    ("output.hidden", "outc.convblock.0", "outc.convblock.1"),
)
_BLOCK_PLAIN_CONV: tuple[tuple[str, str], ...] = (
    ("up2.expand", "upc2.convblock.1"),
    ("up1.expand", "upc1.convblock.1"),
    ("output.project", "outc.convblock.3"),
)
_BLOCKS: tuple[tuple[str, str], ...] = (("stage1", "temp1"), ("stage2", "temp2"))
_BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
OPTIONAL_SUFFIX = ".num_batches_tracked"  # a training counter; unused in eval mode
WRAPPER_PREFIX = "module."  # nn.DataParallel


def checkpoint_key_map() -> dict[str, str]:
    """Our state-dict key -> the released file's key without the `module.` prefix (162 keys)."""
    out: dict[str, str] = {}
    for ours_block, up_block in _BLOCKS:
        for ours, up_conv, up_bn in _BLOCK_CONV_NORM:
            out[f"{ours_block}.{ours}.conv.weight"] = f"{up_block}.{up_conv}.weight"
            for entry in _BN_ENTRIES:
                out[f"{ours_block}.{ours}.norm.{entry}"] = f"{up_block}.{up_bn}.{entry}"
        for ours, up_conv in _BLOCK_PLAIN_CONV:
            out[f"{ours_block}.{ours}.weight"] = f"{up_block}.{up_conv}.weight"
    return out
