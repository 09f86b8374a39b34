"""CamI2V, CameraCtrl and MotionCtrl on DynamiCrafter: our implementation, loading the official
checkpoints unchanged (see `keymap.py` for the names and `loader.py` for the file handling).

    from core.models.cami2v import load_checkpoint_files, relative_poses
    model = load_checkpoint_files("cami2v-512", "ckpts/512_cami2v_100k.pt",
                                  base="pretrained_models/DynamiCrafter_512/model.ckpt",  # used if needed
                                  device="cuda", dtype=torch.bfloat16)
    cam = model.camera_condition(relative_poses(c2w), K)  # once per video
    out = model.unet(x, t, context, fs, camera=cam)       # every step, both CFG branches

`load_pretrained(preset, [base, camera_file])` loads an explicit file list (base first);
`build_with_weight_rule` builds the golden fixtures' deterministic model for tests/benchmarks.

Presets: cami2v-512, cami2v-256, cameractrl-256, motionctrl-256, dynamicrafter-512,
dynamicrafter-256 (`PRESETS`).
"""

from __future__ import annotations

from .camera import (
    CameraCondition,
    build_camera_condition,
    epipolar_mask,
    fundamental_matrices,
    motion_rt,
    pairwise_transforms,
    perturb_zero_translations,
    plucker_embedding,
    relative_poses,
)
from .config import (
    PRESETS,
    DiffusionParams,
    EpipolarParams,
    ModelParams,
    PoseEncoderParams,
    UNetParams,
    get_preset,
    tiny_params,
)
from .keymap import to_ours, to_upstream, upstream_entries
from .loader import (LoadReport, Verdict, check_file, identify, load_checkpoint_files, load_pretrained, load_weights,
                     open_checkpoint, read_header)
from .model import ALL_PARTS, LatentVideoDiffusion, build_meta, build_with_weight_rule
from .pose_encoder import PoseEncoder
from .unet import UNet3D

INSPECTABLE = ("cami2v-512", "cami2v-256", "cameractrl-256", "motionctrl-256", "dynamicrafter-512",
               "dynamicrafter-256")


def inspect_entries(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    """[(upstream key, shape, dtype)] of preset `name`'s full state dict, in upstream order.

    Built on the meta device: costs no tensor memory.
    """
    return upstream_entries(build_meta(name).state_dict())


def verify_file(name: str, path) -> Verdict:
    """Check a downloaded checkpoint (full, camera-only or base) against preset `name`, reading
    only its header (safetensors) or memory-mapping it (torch)."""
    f = read_header(path)
    return check_file(get_preset(name), f.shapes, f.format, name=str(path))


__all__ = [
    "ALL_PARTS", "CameraCondition", "DiffusionParams", "EpipolarParams", "INSPECTABLE", "LatentVideoDiffusion",
    "LoadReport", "ModelParams", "PRESETS", "PoseEncoder", "PoseEncoderParams", "UNet3D", "UNetParams",
    "Verdict", "build_camera_condition", "build_meta", "build_with_weight_rule", "check_file",
    "epipolar_mask", "fundamental_matrices", "get_preset", "identify", "inspect_entries", "load_checkpoint_files",
    "load_pretrained",
    "load_weights", "motion_rt", "open_checkpoint", "pairwise_transforms", "perturb_zero_translations",
    "plucker_embedding", "read_header", "relative_poses", "tiny_params", "to_ours", "to_upstream",
    "upstream_entries", "verify_file",
]
