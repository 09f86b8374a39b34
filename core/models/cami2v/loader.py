"""Reading, checking and strictly loading DynamiCrafter-family checkpoints.

Accepted files: `.safetensors`, or `.pt` / `.ckpt` (torch zip format) holding a raw state dict
or one wrapped as `{"state_dict": ...}` (Lightning) or `{"module": ...}` (DeepSpeed). A model is
loaded from one full file, or from a DynamiCrafter base file with a camera-only file laid over
it (base first; the overlay's keys win). Keys go through `keymap` (the ``lvdm`` format, plus the
DynamiCrafter-256 `framestride_embed` rename) and must then match the model exactly.

Schedule buffers in a file (`betas`, `alphas_cumprod`, ..., `scale_arr`) and the pose encoder's
position tables (`...pos_encoder.pe`) are accepted and ignored: they are derived from the config
and recomputed (the upstream demo also re-registers the schedule after loading).

Memory: nothing is read twice. Safetensors files are read one tensor at a time; torch files
are memory-mapped (`mmap=True, weights_only=True`). Each tensor is cast to the target dtype and
device as it is read and assigned into a meta-device model (`load_state_dict(assign=True)`).
Header-only inspection (`read_header`) never reads tensor data.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from ...errors import CheckpointError, WeightsMissing
from .. import checkpoint as ckpt
from ..checkpoint import CheckpointFile, FileVerdict
from . import keymap
from .config import ModelParams, get_preset
from .model import ALL_PARTS, LatentVideoDiffusion, build_meta


def open_checkpoint(path: str | Path) -> CheckpointFile:
    """Open `path` lazily with upstream keys normalised to the ``lvdm`` format; `format` is
    "dynamicrafter-256" when the file used that release's key names. Missing -> WeightsMissing;
    damaged -> CheckpointError."""
    f = ckpt.open_checkpoint(path, normalise=keymap.normalize_upstream_key)
    return dataclasses.replace(f, format="dynamicrafter-256" if f.renamed else "lvdm")


# ---------------------------------------------------------------------------------------------
# What a file is, and whether it fits a preset


def identify(shapes: Mapping[str, tuple[int, ...]], fmt: str = "lvdm") -> str:
    """A human-readable guess of which model a checkpoint's (upstream) keys belong to.

    Returns e.g. "cami2v-512", "cameractrl-256", "dynamicrafter-256", "cami2v (camera-only file,
    resolution not identifiable)", a bare family when nothing tells the resolution, or "unknown".
    Resolution evidence: `scale_arr` (512 only), `attn2.alpha` / `framestride_embed` (256 only).
    """
    keys = shapes.keys()
    unet = [k for k in keys if k.startswith("model.diffusion_model.")]
    if not unet and not any(k.startswith("pose_encoder.") for k in keys):
        return "unknown"
    if any(".epipolar." in k for k in unet):
        family = "cami2v"
    elif any(".cc_projection." in k for k in unet):
        w = next(shapes[k] for k in unet if k.endswith(".cc_projection.weight"))
        family = "motionctrl" if len(w) == 2 and w[1] == w[0] + 12 else "cameractrl"
    elif any(k.startswith("pose_encoder.") for k in keys):
        family = "cameractrl"
    else:
        family = "dynamicrafter"
    if "scale_arr" in keys:
        return f"{family}-512"
    if fmt == "dynamicrafter-256" or any(k.endswith(".attn2.alpha") for k in unet):
        return f"{family}-256"
    if "model.diffusion_model.input_blocks.0.0.weight" not in keys:
        return f"{family} (camera-only file, resolution not identifiable)"
    return family


def _is_derived(upstream_key: str) -> bool:
    return upstream_key in keymap.TOP_LEVEL_BUFFERS or upstream_key.endswith(".pos_encoder.pe")


@functools.lru_cache(maxsize=8)
def expected_shapes(params: ModelParams) -> dict[str, tuple[int, ...]]:
    """Upstream key -> shape of every state-dict entry of `params`' full model (meta build).

    Cached per preset; treat the result as read-only."""
    with torch.device("meta"):
        model = LatentVideoDiffusion(params)
    return {keymap.to_upstream(k): tuple(v.shape) for k, v in model.state_dict().items()}


_listing = ckpt.listing


# Result of checking one file against a preset (`check_file`): core.models.checkpoint.FileVerdict
Verdict = FileVerdict


def check_file(params: ModelParams, shapes: Mapping[str, tuple[int, ...]], fmt: str = "lvdm",
               name: str = "file") -> Verdict:
    """Does a file with these (normalised upstream) key shapes fit preset `params`?

    Full: every non-derived key, nothing else. Camera-only: exactly a subset that covers every
    camera-specific key (to be laid over the base). Base: the DynamiCrafter preset the camera
    model is built on. Anything else is a mismatch, with the likely variant named.
    """
    expected = expected_shapes(params)
    found = {k: v for k, v in shapes.items() if not _is_derived(k)}
    required = {k for k in expected if not _is_derived(k)}
    ident = identify(shapes, fmt)
    unexpected = sorted(set(found) - set(expected))
    missing = sorted(required - set(found))
    wrong = sorted(f"{k} {list(found[k])} != {list(expected[k])}" for k in set(found) & set(expected)
                   if tuple(found[k]) != tuple(expected[k]))
    if not unexpected and not wrong:
        if not missing:
            return Verdict(True, "full", ident, f"OK: {name} is a full {params.name} checkpoint "
                           f"({len(found)} tensors; schedule buffers are recomputed)")
        base_required: set[str] = set()
        if params.base is not None:
            base_required = {k for k in expected_shapes(get_preset(params.base)) if not _is_derived(k)}
            camera_keys = required - base_required
            if camera_keys <= set(found):
                return Verdict(True, "camera-only", ident,
                               f"OK: {name} is a camera-only {params.name} file ({len(found)} tensors); "
                               f"load it over the {params.base} base checkpoint")
            if set(found) == base_required:
                return Verdict(True, "base", ident,
                               f"OK: {name} is the {params.base} base of {params.name}; "
                               f"it needs the {params.name} camera file laid over it")
    lines = [f"{name} does not fit {params.name}"]
    if ident == "unknown":
        lines.append("it is not a DynamiCrafter-family checkpoint")
    elif ident.split(" ")[0] not in (params.name, params.base):
        lines.append(f"it looks like a {ident} checkpoint")
    if missing:
        lines.append(_listing("missing keys", missing))
    if unexpected:
        lines.append(_listing("unexpected keys", unexpected))
    if wrong:
        lines.append(_listing("keys with the wrong shape", wrong))
    return Verdict(False, "mismatch", ident, "; ".join(lines), missing, unexpected, wrong)


def read_header(path: str | Path) -> CheckpointFile:
    """Keys and shapes only: the safetensors JSON header, or a memory-mapped torch load (opening
    never reads tensor data)."""
    return open_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# Strict loading


@dataclass
class LoadReport:
    files: list[tuple[str, str, str]]  # (path, identified variant, format)
    loaded: int  # tensors taken from files
    ignored: list[str]  # derived entries found in files and recomputed instead


def load_weights(model: nn.Module, paths: Sequence[str | Path], *, device=None,
                 dtype: Optional[torch.dtype] = None, skip_absent_parts: bool = False) -> LoadReport:
    """Strictly load `paths` (base first, then overlays) into `model` (a `LatentVideoDiffusion`,
    typically built on the meta device), casting floating tensors to `dtype` on `device`.

    Raises CheckpointError naming missing / unexpected / wrong-shape keys (first few of each,
    with counts) and the variant the files look like. `skip_absent_parts` drops file keys of
    components the model was built without (e.g. a UNet-only build for benchmarks).
    """
    if not isinstance(model, LatentVideoDiffusion):
        raise TypeError("load_weights expects a LatentVideoDiffusion")
    if not paths:
        raise ValueError("no checkpoint files given")
    files = [open_checkpoint(p) for p in paths]
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    derived_ours = set(model.derived_buffers(device="meta"))
    sources: dict[str, tuple[CheckpointFile, str]] = {}
    unexpected: list[str] = []
    ignored: list[str] = []
    for f in files:
        for key in f.shapes:
            if _is_derived(key):
                ignored.append(key)
                continue
            try:
                ours = keymap.to_ours(key)
            except KeyError:
                unexpected.append(key)
                continue
            if ours not in expected:
                if skip_absent_parts and ours.split(".")[0] not in model.parts:
                    continue
                unexpected.append(key)
                continue
            sources[ours] = (f, key)
    required = [k for k in expected if k not in derived_ours]
    missing = [keymap.to_upstream(k) for k in required if k not in sources]
    wrong = [f"{src[1]} {list(src[0].shapes[src[1]])} != {list(expected[k])}"
             for k, src in sources.items() if tuple(src[0].shapes[src[1]]) != expected[k]]
    verdict = ckpt.KeyVerdict(missing, sorted(set(unexpected)), wrong)
    if not verdict.ok:
        idents = [f"{f.path.name} looks like {identify(f.shapes, f.format)}" for f in files]
        lines = [f"checkpoint does not fit {model.params.name} ({'; '.join(idents)})", verdict.describe()]
        if len(files) == 1 and missing and "model.diffusion_model.input_blocks.0.0.weight" not in files[0].shapes:
            base = model.params.base or "DynamiCrafter"
            lines.append(f"this is a camera-only file: load it over the {base} base checkpoint")
        raise CheckpointError("; ".join(lines))

    state: dict[str, Tensor] = {}
    for k in required:
        f, key = sources[k]
        t = f.read(key)
        state[k] = t.to(device=device, dtype=dtype if (dtype is not None and t.is_floating_point()) else None)
    state.update(model.derived_buffers(device=device))
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    return LoadReport([(str(f.path), identify(f.shapes, f.format), f.format) for f in files],
                      len(required), sorted(set(ignored)))


# ---------------------------------------------------------------------------------------------
# Whole models from files


def load_pretrained(params: ModelParams | str, paths: Sequence[str | Path], device="cpu",
                    dtype: torch.dtype = torch.float32, parts: Collection[str] = ALL_PARTS,
                    component_presets: str = "full") -> LatentVideoDiffusion:
    """Build on the meta device and strictly load checkpoint files (base first, then overlays).

    Raises CheckpointError when the files do not fit the preset (see `loader.load_weights`);
    with fewer `parts`, file keys of the parts left out are skipped.
    """
    model = build_meta(params, parts, component_presets)
    load_weights(model, paths, device=device, dtype=dtype, skip_absent_parts=set(parts) != set(ALL_PARTS))
    return model.eval()


def load_checkpoint_files(params: ModelParams | str, checkpoint: str | Path, base: Optional[str | Path] = None,
                          device="cpu", dtype: torch.dtype = torch.float32,
                          fetch_name: Optional[str] = None, component_presets: str = "full") -> LatentVideoDiffusion:
    """Load a released camera checkpoint whether it is a full model or camera weights only.

    The checkpoint's header decides: with the UNet's first layer it is taken as full and loaded
    alone (`base` is not even opened); otherwise it is laid over `base` (the DynamiCrafter
    checkpoint of `params.base`), which must then exist. `fetch_name` (a models.json name) only
    improves the message when the base is missing.
    """
    params = get_preset(params) if isinstance(params, str) else params
    header = read_header(checkpoint)
    if "model.diffusion_model.input_blocks.0.0.weight" in header.shapes:
        return load_pretrained(params, [checkpoint], device, dtype, component_presets=component_presets)
    if base is None or not Path(base).is_file():
        how = f"python -m core.weights fetch {fetch_name}" if fetch_name else "the model's fetch command"
        raise WeightsMissing(f"{Path(checkpoint).name} holds only the camera weights and needs the "
                             f"{params.base or 'DynamiCrafter'} base checkpoint at {base}; get it with {how}")
    return load_pretrained(params, [base, checkpoint], device, dtype, component_presets=component_presets)
