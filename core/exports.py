"""Exports of a run: the files a user downloads, optionally watermarked.

Formats (`FORMATS`), written under fixed names (`EXPORT_NAMES`: the chain number is its index
in run.json, then the chain and the model that made the clip, both from fixed vocabularies
(registry names), e.g. ``chain-01-denoise+upscale__cami2v-512.mp4`` or
``chain-00-none__kenburns-no-AI-preview.mp4``; nothing is ever named after user text):

* ``mp4``: ``chain-00-<chain>__<model>.mp4``, the run's file as it is, or re-encoded (H.264,
  default CRF) when a watermark is applied.
* ``gif``: ``chain-00-<chain>__<model>.gif`` (looping, palette per frame).
* ``frames``: ``chain-00-<chain>__<model>-frames.zip`` with lossless ``frame-0000.png`` ... and
  ``frames.json``.
* ``camera-txt`` / ``camera-json``: the run's camera path as RealEstate10K text (one line per
  video frame: resampled when the generator changed the frame count) and as recorded (JSON).
* ``run-json`` / ``metrics-json``: the run record and every metric of every chain.

Every export also carries ``export.json``: which chain each number stands for, the formats,
what watermark was applied, and the licences of the models that touched each chain (core.licences). `zip_run` bundles one export into a zip for a download button
and caches it by its options under ``<outputs>/exports/<run id>/``.

The watermarks themselves (visible text, invisible keyed mark, the installation key) are in
`core.watermark`; their names stay importable from here.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .clip import Clip
from .errors import InputError, StudioError
from .licences import chain_licences, run_licences
from .progress import Progress, ProgressFn, as_progress
from .watermark import (  # noqa: F401 (re-exported: the watermark API was here)
    BAND, BLOCK, DEFAULT_STRENGTH, KEY_FILE, MASK_RANGE, MASK_REF, MAX_WATERMARK_CHARS, PAYLOAD_BITS,
    PAYLOAD_TOLERANCE, PILOT_FRACTION, TILE_BLOCKS, Z_THRESHOLD, key_bytes, clean_text, detect, detect_file,
    Detection, draw_text, embed, installation_key, key_path, payload_bits, private_dir,
)
from .fileio import atomic_output, atomic_write_bytes, to_json_text
from .runs import RUN_JSON, Run, outputs_root

FORMATS: tuple[str, ...] = ("mp4", "gif", "frames", "camera-txt", "camera-json", "run-json", "metrics-json")
FORMAT_LABELS: dict[str, str] = {
    "mp4": "MP4 video",
    "gif": "GIF",
    "frames": "PNG frames (zip)",
    "camera-txt": "Camera path (RealEstate10K .txt)",
    "camera-json": "Camera path (JSON)",
    "run-json": "run.json",
    "metrics-json": "metrics.json",
}
CHAIN_FORMATS = ("mp4", "gif", "frames")
EXPORT_NAMES: dict[str, str] = {
    "mp4": "chain-{index:02d}-{stem}.mp4",
    "gif": "chain-{index:02d}-{stem}.gif",
    "frames": "chain-{index:02d}-{stem}-frames.zip",
    "camera-txt": "camera.txt",
    "camera-json": "camera.json",
    "run-json": "run.json",
    "metrics-json": "metrics.json",
}
MANIFEST = "export.json"
EXPORTS_DIR = "exports"
# --------------------------------------------------------------------------- exports


@dataclass(frozen=True)
class Watermark:
    """What to mark exported videos with. text: visible text ("" for none); opacity of the text;
    invisible: add the keyed mark (key: None = this installation's key; payload: None = the run
    id); strength of the invisible mark."""

    text: str = ""
    opacity: float = 0.6
    invisible: bool = False
    key: str | bytes | None = field(default=None, repr=False)
    payload: str | None = None
    strength: float = DEFAULT_STRENGTH

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", clean_text(self.text))
        if not 0.0 < float(self.opacity) <= 1.0:
            raise InputError(f"Watermark opacity must be in (0, 1], got {self.opacity!r}.")
        if not 0.5 <= float(self.strength) <= 10.0:
            raise InputError(f"Watermark strength must be between 0.5 and 10, got {self.strength!r}.")

    @property
    def active(self) -> bool:
        return bool(self.text) or self.invisible

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (never the key itself)."""
        d: dict[str, Any] = {"visible_text": self.text or None, "invisible": self.invisible}
        if self.text:
            d["opacity"] = self.opacity
        if self.invisible:
            d.update(strength=self.strength, payload_bits=PAYLOAD_BITS, scheme="luma-dct-spread-spectrum-v1")
        return d

    def apply(self, frames: np.ndarray, key: bytes | None, payload: str) -> np.ndarray:
        out = draw_text(frames, self.text, opacity=self.opacity) if self.text else frames
        if self.invisible:
            if key is None:
                raise InputError("An invisible watermark needs a key.")
            out = embed(out, self.payload or payload, key, strength=self.strength)
        return out


@dataclass
class ExportResult:
    """Files written by `export_run` (absolute paths) and the manifest written beside them."""

    folder: Path
    files: list[Path]
    manifest: dict[str, Any]


def open_run(run: Run | str | os.PathLike) -> Run:
    """A Run object from a Run or a run folder path."""
    if isinstance(run, Run):
        return run
    folder = Path(run)
    if not (folder / RUN_JSON).is_file():
        raise InputError(f"{folder} is not a run folder (no {RUN_JSON}).")
    return Run.open(folder.parent, folder.name)


def chain_names(run: Run | str | os.PathLike) -> list[str]:
    """The chains of a run that have a video, in run order."""
    r = open_run(run)
    chains = r.data.get("chains") or {}
    return [n for n, e in sorted(chains.items(), key=lambda kv: kv[1].get("index", 0))
            if (e.get("files") or {}).get("mp4")]


def _pick_chains(run: Run, chains: str | Sequence[str] | None) -> list[str]:
    have = chain_names(run)
    if chains is None or chains == "all":
        picked = have
    else:
        picked = [chains] if isinstance(chains, str) else list(chains)
        unknown = [c for c in picked if c not in have]
        if unknown:
            raise InputError(f"Run {run.id} has no chain {unknown[0]!r}; it has: {', '.join(have) or 'none'}.")
    return list(dict.fromkeys(picked))


def _pick_formats(formats: Iterable[str] | None) -> list[str]:
    picked = list(dict.fromkeys(formats or FORMATS))
    unknown = [f for f in picked if f not in FORMATS]
    if unknown:
        raise InputError(f"Unknown export format {unknown[0]!r}; use {', '.join(FORMATS)}.")
    if not picked:
        raise InputError("Pick at least one export format.")
    return picked


def _chain_clip(run: Run, name: str) -> Clip:
    """A chain's frames, losslessly from its PNG folder when the run kept one, else decoded."""
    from . import video

    files = run.data["chains"][name].get("files") or {}
    if files.get("png") and (run.dir / files["png"]).is_dir():
        return video.read_video(run.dir / files["png"], max_pixels=None)  # our own output, bounded at creation
    clip = video.read_video(run.dir / files["mp4"], max_pixels=None)
    fps = ((run.data["chains"][name].get("metrics") or {}).get("fps"))
    return Clip(clip.frames, float(fps)) if fps else clip


def _clip_fps(run: Run) -> float:
    for entry in (run.data.get("chains") or {}).values():
        fps = (entry.get("metrics") or {}).get("fps")
        if fps:
            return float(fps)
    fps = ((run.data.get("params") or {}).get("generator_params") or {}).get("fps")
    return float(fps) if fps else 10.0


def _resolve_key(wm: Watermark | None, key: str | bytes | None, run: Run) -> bytes | None:
    """The invisible mark's key: the one given, else the watermark's, else the installation's."""
    if wm is None or not wm.invisible:
        return None
    if key is not None:
        return key_bytes(key)
    if wm.key is not None:
        return key_bytes(wm.key)
    return installation_key(outputs_root(run.root))  # the key is per installation, not per user


def _clip_frames(run: Run) -> int | None:
    for entry in (run.data.get("chains") or {}).values():
        n = (entry.get("metrics") or {}).get("num_frames")
        if n:
            return int(n)
    return None


def _write_frames_zip(clip: Clip, path: Path) -> None:
    import cv2

    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for i, frame in enumerate(clip.frames):
                ok, buf = cv2.imencode(".png", np.ascontiguousarray(frame[..., ::-1]),
                                       [cv2.IMWRITE_PNG_COMPRESSION, 3])
                if not ok:  # pragma: no cover - OpenCV cannot fail on a valid uint8 image
                    raise StudioError(f"Could not encode frame {i} as PNG.")
                zf.writestr(f"frame-{i:04d}.png", buf.tobytes())
            zf.writestr("frames.json", json.dumps({"fps": clip.fps, "num_frames": clip.num_frames}) + "\n")


def _copy(src: Path, dst: Path) -> None:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)


def export_run(
    run: Run | str | os.PathLike,
    dest: str | os.PathLike,
    *,
    chains: str | Sequence[str] | None = None,
    formats: Iterable[str] | None = None,
    watermark: Watermark | None = None,
    key: str | bytes | None = None,
    progress: Progress | ProgressFn | None = None,
) -> ExportResult:
    """Write the chosen formats of a run into the folder `dest` (created; files under fixed
    names, see EXPORT_NAMES) plus export.json. chains: None or "all" = every chain, a name, or a
    list. watermark: applied to mp4/gif/frames; its invisible part uses `key`, else
    watermark.key, else the installation key of the run's outputs folder."""
    from . import video
    from .camera import CameraPath

    r = open_run(run)
    picked_formats = _pick_formats(formats)
    picked_chains = _pick_chains(r, chains) if any(f in CHAIN_FORMATS for f in picked_formats) else []
    wm = watermark if watermark is not None and watermark.active else None
    wm_key = _resolve_key(wm, key, r)
    prog = as_progress(progress)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    manifest: dict[str, Any] = {
        "run": r.id, "status": r.status, "formats": picked_formats, "chains": {},
        "watermark": wm.describe() if wm else None, "missing": [],
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # which model made the clips ("no-AI preview" for the embedded Ken Burns renderer)
        "generator": _generator_of(r),
        # the licences of every model that touched the clips (recorded in run.json by the job)
        "licences": run_licences(r.data),
    }
    if wm is not None and wm.invisible:
        manifest["watermark"]["payload"] = wm.payload or r.id
    steps = max(1, len(picked_chains) * len([f for f in picked_formats if f in CHAIN_FORMATS]) + 1)
    step = 0
    for name in picked_chains:
        entry = r.data["chains"][name]
        index = int(entry["index"])
        chain_files: list[str] = []
        clip = None
        for fmt in picked_formats:
            if fmt not in CHAIN_FORMATS:
                continue
            prog(step / steps, f"{name}: {FORMAT_LABELS[fmt]}")
            step += 1
            gen = manifest["generator"]
            path = dest / EXPORT_NAMES[fmt].format(index=index, stem=chain_file_stem(name, gen["model"], gen["ai"]))
            src_mp4 = r.dir / entry["files"]["mp4"]
            if fmt == "mp4" and wm is None:
                _copy(src_mp4, path)
            else:
                if clip is None:
                    clip = _chain_clip(r, name)
                    if wm is not None:
                        clip = Clip(wm.apply(clip.frames, wm_key, r.id), clip.fps)
                if fmt == "mp4":
                    video.write_mp4(clip, path)
                elif fmt == "gif":
                    if wm is None and entry["files"].get("gif") and (r.dir / entry["files"]["gif"]).is_file():
                        _copy(r.dir / entry["files"]["gif"], path)
                    else:
                        video.write_gif(clip, path)
                else:
                    _write_frames_zip(clip, path)
            files.append(path)
            chain_files.append(path.name)
        manifest["chains"][name] = {"index": index, "files": chain_files}
        if manifest["licences"] is not None:  # per chain: the generator and that chain's stages
            stage_names = [s.get("stage", "") for s in entry.get("stages") or [] if isinstance(s, Mapping)]
            manifest["licences"].setdefault("chains", {})[name] = chain_licences(
                manifest["licences"], manifest["generator"]["model"], stage_names)
    prog((steps - 1) / steps, "run files")
    sources = {"camera-json": r.dir / "camera.json", "run-json": r.dir / RUN_JSON, "metrics-json": r.dir / "metrics.json"}
    for fmt in picked_formats:
        if fmt in CHAIN_FORMATS:
            continue
        path = dest / EXPORT_NAMES[fmt]
        if fmt == "camera-txt":
            src = sources["camera-json"]
            if not src.is_file():
                manifest["missing"].append(fmt)
                continue
            cam_path = CameraPath.from_dict(json.loads(src.read_text(encoding="utf-8")))
            n = _clip_frames(r)
            if n and n != cam_path.num_frames and n >= 2:
                # The generator resampled the path to the clip's length (e.g. a frame-count
                # parameter); the exported lines follow the video, one per frame.
                cam_path = cam_path.resampled(n)
            atomic_write_bytes(path, cam_path.to_realestate10k(fps=_clip_fps(r)).encode("utf-8"))
        else:
            src = sources[fmt]
            if not src.is_file():
                manifest["missing"].append(fmt)
                continue
            _copy(src, path)
        files.append(path)
    if not files:
        raise InputError(f"Run {r.id} has nothing to export in the chosen formats.")
    manifest["files"] = [p.name for p in files]
    if r.status == "running":
        # A run still going has no metrics.json yet: the export says so instead of dropping it.
        manifest["partial"] = True
        manifest["note"] = (f"Run {r.id} was still running when exported: only the chains finished so far "
                            "are included" + (", and metrics.json is not written yet." if "metrics-json" in
                                              manifest["missing"] else "."))
    atomic_write_bytes(dest / MANIFEST, to_json_text(manifest).encode("utf-8"))
    prog(1.0, "export written")
    return ExportResult(dest, files + [dest / MANIFEST], manifest)


def chain_file_stem(chain: str, model: str, is_ai: bool = True) -> str:
    """File-name stem naming a chain's clip and its model: '<chain>__<model>', with
    '-no-AI-preview' after the embedded preview's name, e.g. 'denoise+upscale__cami2v-512' or
    'none__kenburns-no-AI-preview'. Only letters, digits, '_', '+' and '-' survive."""
    chain_part = re.sub(r"[^A-Za-z0-9_+-]+", "-", chain).strip("-") or "chain"
    model_part = re.sub(r"[^A-Za-z0-9_-]+", "-", model).strip("-") or "model"
    return f"{chain_part}__{model_part}" + ("" if is_ai else "-no-AI-preview")


def _generator_of(run: Run) -> dict[str, Any]:
    """{"model", "label", "ai"} of the run's generator, from run.json."""
    name = str((run.data.get("params") or {}).get("model") or "")
    info = (run.data.get("models") or {}).get(name) if isinstance(run.data.get("models"), dict) else None
    label = str((info or {}).get("label") or name)
    ai = (info or {}).get("variant") != "kenburns" and name != "kenburns"
    return {"model": name, "label": label if ai else f"{label} - no-AI preview", "ai": ai}


def _options_digest(run: Run, chains: list[str], formats: list[str], wm: Watermark | None,
                    key: bytes | None) -> str:
    desc = {"run": run.id, "updated": run.data.get("updated"), "chains": chains, "formats": formats,
            "watermark": wm.describe() if wm else None, "payload": (wm.payload if wm else None),
            "key": hashlib.sha256(key).hexdigest() if key else None}
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def zip_run(
    run: Run | str | os.PathLike,
    chains: str | Sequence[str] | None = None,
    formats: Iterable[str] | None = None,
    watermark: Watermark | None = None,
    *,
    key: str | bytes | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: Progress | ProgressFn | None = None,
) -> Path:
    """One zip of `export_run`'s files, for a download button. Stored as
    ``<out_dir or outputs/exports/<run id>>/export-<options digest>.zip``; the same options
    return the same (cached) file."""
    r = open_run(run)
    picked_formats = _pick_formats(formats)
    picked_chains = _pick_chains(r, chains)
    wm = watermark if watermark is not None and watermark.active else None
    wm_key = _resolve_key(wm, key, r)
    folder = Path(out_dir) if out_dir is not None else r.root / EXPORTS_DIR / r.id
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"export-{_options_digest(r, picked_chains, picked_formats, wm, wm_key)}.zip"
    if target.is_file():
        as_progress(progress)(1.0, "export ready (cached)")
        return target
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
        result = export_run(r, tmp, chains=picked_chains, formats=picked_formats, watermark=wm, key=wm_key,
                            progress=progress)
        with atomic_output(target) as part:
            with zipfile.ZipFile(part, "w") as zf:
                for p in result.files:
                    # Video and zip files are already compressed; deflating them only costs time.
                    kind = zipfile.ZIP_STORED if p.suffix in (".mp4", ".gif", ".zip") else zipfile.ZIP_DEFLATED
                    zf.write(p, arcname=p.name, compress_type=kind)
    return target
