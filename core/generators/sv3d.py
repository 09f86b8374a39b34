"""SV3D-U and SV3D-P: a 21-frame orbit around the object in a photo (Stability AI, 2024).

Both make 576x576 views on an orbit around an object photographed on its own. SV3D-U picks
its own orbit (a full turn at the photo's elevation) and ignores the camera path; SV3D-P
follows one elevation and azimuth per frame: from the camera path (core.orbit projects it
onto the orbit sphere; orbit presets map directly), or from explicit lists given exactly as
the SVD tool took them (`elevations_deg`, `azimuths_deg`; one elevation or 21, 21 azimuths,
the photo's view last).

Framing, as the SVD tool does for SV3D: optional background removal (`rembg`, when
installed), then with an `image_frame_ratio` the object's bounding box is centred on a square
canvas `max(w, h) / ratio` wide; the result is resized to the output size (Lanczos) and
composited on white. Without either, the photo is centre-cropped to a square.

Sampling (core.sampling.edm): the photo (plus `cond_aug` noise) is VAE-encoded as the concat
latent, its CLIP embedding is the cross-attention token; Euler steps on EDM sigmas up to 700
with the triangle guider (1 at both ends of the orbit, `max_guidance` half way round). The
decoded last frame is replaced by the photo (the tool does so: it is the photo's own view).
Frames are returned photo first (studio order; the model's order has the photo last).

Noise comes from a per-call CPU generator seeded by the request: the `cond_aug` noise for the
photo first, then the initial latent, so a seed gives the same orbit on any device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..clip import Clip
from ..errors import ConfigError, InputError, WeightsMissing
from ..orbit import (DEFAULT_ELEVATION_DEG, Orbit, default_orbit, orbit_from_degrees, orbit_from_path,
                     parse_degrees, to_studio_order)
from ..params import ParamSpec, resolve_params
from ..progress import Progress, as_progress
from .base import GenerateRequest, GenerateResult, Generator
from .svd import cover_crop

NATIVE_SIZE = 576
NUM_FRAMES = 21
SIZE_MULTIPLE = 64
DTYPES = ("fp32", "bf16", "fp16")
_ENCODE_END, _DENOISE_END = 0.03, 0.9
GATED = ("The SV3D weights are gated: log in at https://huggingface.co/stabilityai/sv3d, accept the Stability AI "
         "Community License there, set HF_TOKEN to a token of that account, then fetch.")


@dataclass(frozen=True)
class SV3DVariant:
    name: str
    label: str
    preset: str
    follows_path: bool


VARIANTS: dict[str, SV3DVariant] = {
    v.name: v for v in (
        SV3DVariant("sv3d-u", "SV3D-U (21-view orbit)", "sv3d-u", False),
        SV3DVariant("sv3d-p", "SV3D-P (21-view orbit along your path)", "sv3d-p", True),
    )
}


def param_specs(follows_path: bool, defaults: dict[str, Any] | None = None) -> tuple[ParamSpec, ...]:
    """The user-facing controls; `defaults` (a models.json entry's) overrides default values."""
    d = {"steps": 50, "max_guidance": 2.5, "size": NATIVE_SIZE, **(defaults or {})}
    specs = [
        ParamSpec("steps", "int", d["steps"], "Denoising steps", 1, 100, 1,
                  help="Euler steps on EDM sigmas (the SV3D release uses 50)."),
        ParamSpec("max_guidance", "float", d["max_guidance"], "Guidance half way round", 1.0, 10.0, 0.1,
                  help="Image guidance peaks at this value for the view opposite the photo and falls to 1 "
                       "at both ends of the orbit (the triangle guider)."),
        ParamSpec("elevation_deg", "float", DEFAULT_ELEVATION_DEG, "Photo elevation (degrees)", -89.0, 89.0, 1.0,
                  help="How far above the object the photo was taken. SV3D-U orbits at this height; for "
                       "SV3D-P the camera path's heights are added to it."),
    ]
    if follows_path:
        specs += [
            ParamSpec("elevations_deg", "str", "", "Elevations (degrees, overrides the path)",
                      help="One value, or 21 like [10,15,20,...] with the photo's view last, as the SVD tool "
                           "took them. Empty: follow the camera path."),
            ParamSpec("azimuths_deg", "str", "", "Azimuths (degrees, overrides the path)",
                      help="21 values with the photo's view last (relative to it). Empty with elevations "
                           "given: a full turn."),
        ]
    specs += [
        ParamSpec("remove_background", "bool", False, "Remove the background",
                  help="Cut the object out (needs the optional rembg package) before framing it on white."),
        ParamSpec("image_frame_ratio", "float", 0.0, "Object size in frame", 0.0, 1.0, 0.05,
                  help="Share of the frame the object's longer side fills (0: keep the photo's framing)."),
        ParamSpec("cond_aug", "float", 1e-5, "Noise augmentation", 0.0, 1.0, 1e-5,
                  help="Noise added to the photo before encoding (the release uses 1e-5)."),
        ParamSpec("decode_chunk_size", "int", 14, "Frames per VAE decode", 1, NUM_FRAMES, 1,
                  help="Frames decoded at once; lower it if memory runs out at the end of a run."),
        ParamSpec("size", "int", d["size"], "Size", 64, NATIVE_SIZE, SIZE_MULTIPLE,
                  help="Square output size, a multiple of 64; the model was trained at 576."),
        ParamSpec("fps", "float", 10.0, "Playback frames per second", 1.0, 60.0, 1.0,
                  help="Frame rate of the written video."),
    ]
    return tuple(specs)


# ---------------------------------------------------------------------------------------------
# Framing


def remove_background(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 4) uint8 RGBA with the background transparent, via `rembg`
    (the photo is first shrunk to fit 768x768, as the SVD tool does). InputError without rembg."""
    try:
        from rembg import remove
    except ImportError:
        raise InputError("Background removal needs the optional 'rembg' package, which is not installed "
                         "(pip install rembg); turn 'Remove the background' off or install it.") from None
    import PIL.Image

    pil = PIL.Image.fromarray(image)
    pil.thumbnail([768, 768], PIL.Image.Resampling.LANCZOS)
    return np.asarray(remove(pil.convert("RGBA"), alpha_matting=True))


def frame_object(image: np.ndarray, size: int, ratio: float) -> tuple[np.ndarray, list[int]]:
    """Centre the object of an RGBA (or RGB: all opaque) image on a square, SV3D style.

    The alpha mask's bounding box (w x h) is pasted centred on a transparent square of side
    max(w, h) / ratio, or with ratio 0 the image's height (the tool's choice); at least max(w, h)
    either way. It is then resized to `size` (Lanczos) and composited on white.
    Returns the (size, size, 3) uint8 frame and the box [x0, y0, x1, y1] in the image's pixels.
    """
    import cv2
    import PIL.Image

    rgba = image if image.shape[2] == 4 else np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], 2)
    _, mask = cv2.threshold(np.ascontiguousarray(rgba[..., 3]), 0, 255, cv2.THRESH_BINARY)
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        raise InputError("Background removal left nothing of the photo; try without it.")
    longest = max(w, h)
    side = max(longest, int(longest / ratio) if ratio > 0 else rgba.shape[0])
    canvas = np.zeros((side, side, 4), np.uint8)
    c = side // 2
    canvas[c - h // 2:c - h // 2 + h, c - w // 2:c - w // 2 + w] = rgba[y:y + h, x:x + w]
    resized = np.asarray(PIL.Image.fromarray(canvas).resize((size, size), PIL.Image.LANCZOS)) / 255.0
    rgb = resized[..., :3] * resized[..., 3:] + (1 - resized[..., 3:])
    return (rgb * 255).astype(np.uint8), [x, y, x + w, y + h]


def resample_orbit(orbit: Orbit, n: int) -> Orbit:
    """An orbit (studio order) linearly resampled to n frames."""
    if orbit.num_frames == n:
        return orbit
    src = np.linspace(0.0, 1.0, orbit.num_frames)
    dst = np.linspace(0.0, 1.0, n)
    return Orbit(tuple(np.interp(dst, src, orbit.elevations_deg)), tuple(np.interp(dst, src, orbit.azimuths_deg)),
                 "studio", orbit.warnings)


# ---------------------------------------------------------------------------------------------
# The generator


class SV3DGenerator(Generator):
    """SV3D-U / SV3D-P orbit generator; see the module docstring."""

    width = NATIVE_SIZE
    height = NATIVE_SIZE
    num_frames = NUM_FRAMES
    fps = 10.0
    is_ai = True

    def __init__(self, name: str, load_model: Callable[[], Any], *, label: str | None = None,
                 follows_path: bool | None = None, defaults: dict[str, Any] | None = None):
        variant = VARIANTS.get(name)
        self.name = name
        self.label = label or (variant.label if variant else name)
        self.follows_path = bool(variant.follows_path if follows_path is None else follows_path)
        self.camera_control = self.follows_path
        self._defaults = {k: v for k, v in (defaults or {}).items() if k in ("steps", "max_guidance", "size")}
        self._load_model = load_model
        self.width = self.height = int(self._defaults.get("size", NATIVE_SIZE))

    @classmethod
    def from_entry(cls, entry, load_model: Callable[[], Any]) -> "SV3DGenerator":
        """The generator of a models.json entry: `options.variant` (sv3d-u | sv3d-p; default the
        entry's name) says whether it follows the path; `defaults` may set steps, max_guidance, size."""
        variant = VARIANTS.get(entry.options.get("variant", entry.name))
        if variant is None:
            raise ConfigError(f"models.json: entry {entry.name!r}, field 'options.variant': one of "
                              f"{', '.join(VARIANTS)}.")
        gen = cls(entry.name, load_model, label=entry.label, follows_path=variant.follows_path,
                  defaults=dict(entry.defaults))
        try:
            resolve_params(gen.param_specs(), {})
        except InputError as exc:
            raise ConfigError(f"models.json: entry {entry.name!r}, field 'defaults': {exc}") from None
        return gen

    def param_specs(self) -> Sequence[ParamSpec]:
        return param_specs(self.follows_path, self._defaults)

    # -- pieces --------------------------------------------------------------------------------

    def frame_photo(self, image: np.ndarray, p: dict[str, Any]) -> tuple[np.ndarray, list[int]]:
        if p["remove_background"]:
            rgba = remove_background(image)
            frame, box = frame_object(rgba, p["size"], p["image_frame_ratio"])
            sx, sy = image.shape[1] / rgba.shape[1], image.shape[0] / rgba.shape[0]
            return frame, [int(round(box[0] * sx)), int(round(box[1] * sy)), int(round(box[2] * sx)),
                           int(round(box[3] * sy))]
        if p["image_frame_ratio"] > 0:
            return frame_object(image, p["size"], p["image_frame_ratio"])
        return cover_crop(image, p["size"], p["size"])

    def orbit(self, request: GenerateRequest, p: dict[str, Any]) -> Orbit | None:
        """SV3D-P's orbit in studio order (None for SV3D-U)."""
        if not self.follows_path:
            return None
        el = parse_degrees(p["elevations_deg"], "Elevations")
        az = parse_degrees(p["azimuths_deg"], "Azimuths")
        if isinstance(az, float):
            raise InputError(f"Azimuths must be a list of {NUM_FRAMES} values (one per frame).")
        if el is not None or az is not None:
            o = orbit_from_degrees(p["elevation_deg"] if el is None else el, az, NUM_FRAMES)
            return Orbit(tuple(to_studio_order(o.elevations_deg)), tuple(to_studio_order(o.azimuths_deg)), "studio",
                         ("Elevations/azimuths were given, so the camera path was not used.",))
        if request.camera is None:
            o = default_orbit(NUM_FRAMES, p["elevation_deg"])
            return Orbit(tuple(to_studio_order(o.elevations_deg)), tuple(to_studio_order(o.azimuths_deg)))
        return resample_orbit(orbit_from_path(request.camera, p["elevation_deg"]), NUM_FRAMES)

    # -- run -----------------------------------------------------------------------------------

    def generate(self, request: GenerateRequest, progress: Progress) -> GenerateResult:
        import torch

        from ..models.sv3d.conditioning import vector_conditioning
        from ..sampling.edm import GuidedVDenoiser, VideoConditioning, edm_sigmas, sample_euler_edm, triangle_scales

        progress = as_progress(progress)
        t_start = time.perf_counter()
        p = resolve_params(self.param_specs(), request.params)
        if request.num_frames not in (None, NUM_FRAMES):
            raise InputError(f"{self.label} makes one {NUM_FRAMES}-frame orbit; it cannot make a "
                             f"{request.num_frames}-frame shot.")
        if p["size"] % SIZE_MULTIPLE:
            raise InputError(f"Size must be a multiple of {SIZE_MULTIPLE} for SV3D, got {p['size']}.")
        image = request.image
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError("The photo must be an RGB image ((H, W, 3) uint8).")
        orbit = self.orbit(request, p)
        frame0, crop_box = self.frame_photo(image, p)

        progress(0.0, f"loading {self.label}")
        model = self._load_model()
        sv3d = getattr(model, "model", model)
        params = sv3d.params
        if params.conditions_on_camera != self.follows_path:
            raise ConfigError(f"{self.label}: the loaded weights are {params.name}, which does "
                              f"{'' if params.conditions_on_camera else 'not '}take camera angles.")
        t_loaded = time.perf_counter()
        device, dtype = sv3d.device, sv3d.dtype
        n, size, steps = NUM_FRAMES, p["size"], p["steps"]

        progress(_ENCODE_END * 0.5, "encoding the photo")
        gen = torch.Generator("cpu").manual_seed(int(request.seed))
        photo = torch.from_numpy(frame0).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # (1, 3, S, S) in [-1, 1]
        noisy = photo + p["cond_aug"] * torch.randn(photo.shape, generator=gen)
        noise = torch.randn((n, 4, size // 8, size // 8), generator=gen)
        angles = orbit.angles() if orbit is not None else None
        vector = vector_conditioning(params.vector_dims, n, p["cond_aug"], angles)
        denoise_progress = progress.sub(_ENCODE_END, _DENOISE_END)

        def on_step(i: int, total: int, _x) -> None:
            denoise_progress((i + 1) / total, f"step {i + 1}/{total}")

        cuda = str(device).startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode():
            context = sv3d.embed_image(photo.to(device))
            concat = sv3d.encode_concat(noisy.to(device))
            cond = VideoConditioning(context, concat, vector.to(device))
            uncond = VideoConditioning(torch.zeros_like(context), torch.zeros_like(concat), vector.to(device))
            scales = triangle_scales(n, p["max_guidance"]).to(device)
            den = GuidedVDenoiser(sv3d.unet, cond, uncond, scales)
            sigmas = edm_sigmas(steps, sigma_max=params.sigma_max).to(device)
            latents = sample_euler_edm(den, noise.to(device=device, dtype=dtype), sigmas, on_step)
            t_denoised = time.perf_counter()
            frames = self._decode(sv3d, latents, p["decode_chunk_size"], progress.sub(_DENOISE_END, 1.0))
        frames[-1] = frame0  # the photo's own view, as the tool does
        frames = np.ascontiguousarray(to_studio_order(frames))
        t_end = time.perf_counter()

        warnings = list(orbit.warnings) if orbit is not None else [
            "SV3D-U has no camera input: the camera path was not used; it makes its own full orbit."]
        info: dict[str, Any] = {
            "renderer": "sv3d", "model": self.name, "size": [size, size], "num_frames": n,
            "crop_box": crop_box, "photo_size": [int(image.shape[1]), int(image.shape[0])],
            "params": dict(p), "fps": float(p["fps"]), "seed": int(request.seed),
            "dtype": str(dtype).removeprefix("torch."), "device": str(device),
            "camera_ignored": not self.follows_path, "warnings": warnings,
            "frame_order": "photo first (the model's last view), then the orbit",
            "timings": {"load_s": t_loaded - t_start, "denoise_s": t_denoised - t_loaded,
                        "decode_s": t_end - t_denoised, "total_s": t_end - t_start},
        }
        if orbit is not None:
            info["orbit"] = {"elevations_deg": [round(v, 4) for v in orbit.elevations_deg],
                             "azimuths_deg": [round(v, 4) for v in orbit.azimuths_deg]}
        peak = None
        if cuda:
            from .base import PeakMemory

            info["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
            peak = PeakMemory(str(device), info["peak_memory_bytes"])
        return GenerateResult(Clip(frames, p["fps"]), info, crop_box=tuple(crop_box), params=dict(p),
                              timings={k.removesuffix("_s"): v for k, v in info["timings"].items()},
                              peak_memory=peak)

    @staticmethod
    def _decode(sv3d: Any, latents: Any, chunk: int, progress: Progress) -> np.ndarray:
        """(T, 4, h, w) latents -> (T, H, W, 3) uint8 in the model's order, `chunk` frames per call."""
        import torch

        t = latents.shape[0]
        out = []
        progress(0.0, "decoding")
        for start in range(0, t, chunk):
            x = sv3d.decode(latents[start:start + chunk], chunk).float()
            x = torch.clamp((x + 1.0) / 2.0, 0.0, 1.0)
            out.append((x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy())
            done = min(start + chunk, t)
            progress(done / t, f"decoded {done}/{t} frames")
        return np.concatenate(out, axis=0)


# ---------------------------------------------------------------------------------------------
# Loading


class SV3DModel:
    """A loaded SV3D with what the model manager needs (size, device, dtype, `to`)."""

    def __init__(self, model: Any):
        self.model = model

    @property
    def nbytes(self) -> int:
        from ..manager import module_bytes

        return module_bytes(self.model)

    @property
    def device(self):
        return self.model.device

    @property
    def dtype(self):
        return self.model.dtype

    def to(self, device: Any) -> "SV3DModel":
        self.model.to(device)
        return self


def load_model(registry, entry, *, device: Any = "cpu", dtype: str = "fp32") -> SV3DModel:
    """The entry's released file (`sv3d_u.safetensors` / `sv3d_p.safetensors`, role "model"),
    strictly loaded onto `device` in `dtype`. `options.preset` picks the architecture (default:
    the variant's; tests use "tiny-p"/"tiny-u"). Missing weights raise WeightsMissing saying how
    to accept the licence and fetch them."""
    import torch

    from ..models.sv3d.loader import load_file

    entry = registry.get(entry) if isinstance(entry, str) else entry
    try:
        registry.require_files(entry)
    except WeightsMissing as exc:
        raise WeightsMissing(f"{exc} {GATED}") from None
    variant = VARIANTS.get(entry.options.get("variant", entry.name))
    if variant is None:
        raise ConfigError(f"models.json: entry {entry.name!r}, field 'options.variant': one of {', '.join(VARIANTS)}.")
    preset = entry.options.get("preset", variant.preset)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype, torch.float32)
    model = load_file(preset, registry.path(entry, "model"), device=device, dtype=torch_dtype,
                      hint=f"python -m core.weights fetch {entry.name}")
    return SV3DModel(model)
