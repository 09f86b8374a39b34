"""The one key map between upstream checkpoint keys and our module names.

Checkpoint formats
------------------
``lvdm``  The LightningModule state dict of CamI2V / CameraCtrl / MotionCtrl / DynamiCrafter-512
          (`model.diffusion_model.*`, `first_stage_model.*`, ...). Full files and camera-only
          files use the same names.
``dynamicrafter-256``  The same, except the fs MLP is called `framestride_embed`;
          `normalize_upstream_key` turns it into the ``lvdm`` name `fps_embedding`.

Renames (everything else keeps its upstream name under our component prefix):

    model.diffusion_model.            -> unet.
    first_stage_model.                -> vae.
    cond_stage_model.                 -> text_encoder.
    embedder.                         -> image_encoder.
    image_proj_model.                 -> image_proj.
    pose_encoder.                     -> pose_encoder.
    (unet) temopral_conv [sic]        -> temporal_conv
    (unet) pluker_projection [sic]    -> plucker_projection
    (unet) epipolar.epipolar_attn.    -> epipolar.
    (unet) init_attn.0.               -> init_attn.           (a TimestepEmbedSequential of one)
    (pose) attention_blocks.0.        -> attn.                (one attention block per layer)
    (pose) norms.0.                   -> norm.
    schedule buffers (betas, ..., scale_arr) keep their top-level names.

Both directions are total on the keys of our models and are tested to round-trip over the
upstream manifests.
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor

# (upstream prefix, our prefix)
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.diffusion_model.", "unet."),
    ("first_stage_model.", "vae."),
    ("cond_stage_model.", "text_encoder."),
    ("embedder.", "image_encoder."),
    ("image_proj_model.", "image_proj."),
    ("pose_encoder.", "pose_encoder."),
)

# Inside a component (matched on "." + rest of the key): (upstream fragment, our fragment).
_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "unet.": (
        (".temopral_conv.", ".temporal_conv."),
        (".pluker_projection.", ".plucker_projection."),
        (".epipolar.epipolar_attn.", ".epipolar."),
        (".init_attn.0.", ".init_attn."),
    ),
    "pose_encoder.": (
        (".attention_blocks.0.", ".attn."),
        (".norms.0.", ".norm."),
    ),
}

# Upstream DDPM buffers (top-level keys of the checkpoints), in their registration (= state-dict) order.
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
)
TOP_LEVEL_BUFFERS = SCHEDULE_BUFFERS + ("scale_arr",)


def normalize_upstream_key(key: str) -> str:
    """``dynamicrafter-256`` -> ``lvdm``: the DynamiCrafter-256 checkpoint's fs MLP name."""
    return key.replace("model.diffusion_model.framestride_embed.", "model.diffusion_model.fps_embedding.")


def _rename(rest: str, renames: tuple[tuple[str, str], ...], reverse: bool) -> str:
    rest = "." + rest
    for upstream, ours in renames:
        src, dst = (ours, upstream) if reverse else (upstream, ours)
        rest = rest.replace(src, dst)
    return rest[1:]


def _convert(key: str, reverse: bool) -> str:
    if key in TOP_LEVEL_BUFFERS:
        return key
    for upstream, ours in _PREFIXES:
        src, dst = (ours, upstream) if reverse else (upstream, ours)
        if key.startswith(src):
            return dst + _rename(key[len(src):], _RENAMES.get(ours, ()), reverse=reverse)
    raise KeyError(key)


def to_ours(key: str) -> str:
    """Upstream (``lvdm``) key -> our state-dict key. KeyError for keys of no known component."""
    return _convert(key, reverse=False)


def to_upstream(key: str) -> str:
    """Our state-dict key -> upstream (``lvdm``) key. KeyError for keys of no known component."""
    return _convert(key, reverse=True)


def upstream_entries(state_dict: Mapping[str, Tensor]) -> list[tuple[str, tuple[int, ...], str]]:
    """[(upstream key, shape, dtype name)] of one of our state dicts, in upstream state-dict order.

    Our modules register children in the checkpoint's order, so this is our order renamed, with
    one exception fixed here: OpenCLIP's text tower registers `token_embedding` after its
    `transformer` (our text encoder may register it first), so the token embedding is moved to
    just after the last `transformer.` key of the same tower.
    """
    entries = [(to_upstream(k), tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state_dict.items()]
    for tower in ("cond_stage_model.model.",):
        token = [e for e in entries if e[0].startswith(tower + "token_embedding.")]
        if not token:
            continue
        rest = [e for e in entries if not e[0].startswith(tower + "token_embedding.")]
        last = max(i for i, e in enumerate(rest) if e[0].startswith(tower + "transformer."))
        entries = rest[: last + 1] + token + rest[last + 1:]
    return entries
