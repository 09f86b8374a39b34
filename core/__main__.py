"""Command line: the same service the dashboard calls.

    python -m core generate --image PATH_OR_DIR --model kenburns --path push-in \
        --chains none,denoise,upscale,denoise+upscale,upscale+denoise --out DIR [--frames]

For every image and camera path this writes DIR/<image>/<path>/ with one MP4 per chain
(`<chain>.mp4`), `metrics.json` (every metric of every chain, and the study-format table),
`camera.txt` (RealEstate10K), `run.json`, and with --frames the PNG frames the metrics were
computed on (`frames/<chain>/frame-NNNN.png`). User errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

from .errors import InputError, StudioError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.")
    return s[:80] or "item"


def _images(spec: str) -> list[Path]:
    p = Path(spec).expanduser()
    if p.is_dir():
        found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS and q.is_file())
        if not found:
            raise InputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in {p}.")
        return found
    if not p.is_file():
        raise InputError(f"No such image or folder: {p}.")
    return [p]


def _parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param expects NAME=VALUE, got {item!r}.")
        out[key.strip()] = value.strip()
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        if dst.is_dir():
            shutil.rmtree(dst)
        else:
            dst.unlink()
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_hardlink_or_copy)
    else:
        _hardlink_or_copy(src, dst)


def _hardlink_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .service import CameraSpec, JobRequest, Studio, StudioSettings

    out = Path(args.out).expanduser()
    studio = Studio(StudioSettings(models=Path(args.models) if args.models else None, outputs=out / ".runs",
                                   device=args.device, dtype=args.dtype))
    for msg in studio.startup_messages():
        print("warning:", msg, file=sys.stderr)
    images = _images(args.image)
    paths = [p.strip() for p in args.path.split(",") if p.strip()]
    if not paths:
        raise InputError("--path needs at least one camera preset (e.g. push-in).")
    chains = [c.strip() for c in args.chains.split(",") if c.strip()]
    roles = {"denoise": args.denoiser, "upscale": args.upscaler}
    params = _parse_params(args.param)
    amount = args.amount
    distance = args.distance
    failures = 0
    for image_path in images:
        try:
            image = studio.load_image(image_path)
            data = image_path.read_bytes()
        except StudioError as exc:
            print(f"{image_path}: {exc}", file=sys.stderr)
            failures += 1
            continue
        for preset in paths:
            dest = out / _slug(image_path.stem) / _slug(preset)
            request = JobRequest(
                image=image, image_bytes=data, image_name=image_path.name, model=args.model,
                camera=CameraSpec(mode="preset", preset=preset, amount=amount, distance=distance),
                prompt=args.prompt, negative_prompt=args.negative_prompt, seed=args.seed, params=params,
                chains=tuple(chains), roles=roles, save_frames=args.frames,
            )
            bar = tqdm(total=1000, desc=f"{image_path.name} {preset}", unit="‰", leave=True,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

            def progress(frac: float, msg: str) -> None:
                bar.n = int(frac * 1000)
                bar.set_postfix_str(msg[:40], refresh=False)
                bar.refresh()

            run_id = None
            try:
                events = {}
                for ev in studio.run_job(request, progress):
                    run_id = ev.run_id
                    if ev.chain:
                        events[ev.chain] = ev
            except StudioError as exc:
                bar.close()
                print(f"{image_path.name} / {preset}: {exc}", file=sys.stderr)
                failures += 1
                continue
            finally:
                bar.close()
            run = studio.open_run(run_id)
            dest.mkdir(parents=True, exist_ok=True)
            for name, ev in events.items():
                _link_or_copy(ev.video, dest / f"{_slug(name)}.mp4")
                if ev.frames_dir is not None:
                    _link_or_copy(ev.frames_dir, dest / "frames" / _slug(name))
            _link_or_copy(run.path("metrics"), dest / "metrics.json")
            _link_or_copy(run.dir / "run.json", dest / "run.json")
            camera = json.loads(run.path("camera").read_text())
            from .camera import CameraPath

            (dest / "camera.txt").write_text(CameraPath.from_dict(camera).to_realestate10k())
            print(f"{image_path.name} / {preset}: {len(events)} chain(s) -> {dest}")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="CamI2V Studio command line")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate walkthroughs and post-processing chains")
    g.add_argument("--image", required=True, help="a photo, or a folder of photos")
    g.add_argument("--model", default="kenburns", help="generator name from models.json (default kenburns)")
    g.add_argument("--path", default="push-in", help="comma-separated camera presets (e.g. push-in,pan-left)")
    g.add_argument("--amount", type=float, default=None, help="move amount (default: the preset's)")
    g.add_argument("--distance", type=float, default=None, help="translation scale (default: the preset's)")
    g.add_argument("--chains", default="none", help="comma-separated chains: none, denoise, upscale, "
                                                    "denoise+upscale, upscale+denoise or stage names")
    g.add_argument("--denoiser", default="nlmeans", help="stage used for 'denoise' (default nlmeans)")
    g.add_argument("--upscaler", default="lanczos", help="stage used for 'upscale' (default lanczos)")
    g.add_argument("--prompt", default="", help="text prompt for AI generators")
    g.add_argument("--negative-prompt", default="", help="negative prompt for AI generators")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--param", action="append", default=[], help="generator parameter NAME=VALUE (repeatable)")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--frames", action="store_true", help="also write the PNG frames the metrics used")
    g.add_argument("--models", default=None, help="model registry (default models.json)")
    g.add_argument("--device", default="auto")
    g.add_argument("--dtype", default="auto")
    g.set_defaults(func=cmd_generate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
