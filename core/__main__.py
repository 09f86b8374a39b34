"""Command line: the same service the dashboard calls.

    python -m core generate --image PATH_OR_DIR --model kenburns --path push-in \
        --chains none,denoise,upscale,denoise+upscale,upscale+denoise --out DIR [--frames]

For every image and camera path this writes DIR/<image>/<path>/ with one MP4 per chain
(`<chain>.mp4`), `metrics.json` (every metric of every chain, and the study-format table),
`camera.txt` (RealEstate10K), `run.json`, and with --frames the PNG frames the metrics were
computed on (`frames/<chain>/frame-NNNN.png`). User errors print one line and exit non-zero.

    python -m core study --images DIR --paths push-in,slide-left,pan-left --chains all \
        --model kenburns --out DIR [--slurm] | python -m core study --collect DIR

runs every photo x camera move (all chains per job), resumably, and writes study.csv,
table.md and plots.html (see `core.study`); --slurm writes and submits a job array instead.

    python -m core measure A.mp4 B.mp4 ... [--reference photo.png] [--json]

prints every metric of videos made anywhere (the dashboard's definitions and code path); --json
writes one JSON object keyed by file name to stdout.
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
from .imagefiles import IMAGE_EXTENSIONS, images_in as _images  # noqa: F401 (IMAGE_EXTENSIONS re-exported)


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.")
    return s[:80] or "item"


def _result_names(images: list[Path]) -> dict[Path, str]:
    """One distinct folder name per photo: the slug of its stem, or of its whole name when two
    stems collide (room.jpg / room.png), with -2, -3... when even those collide (a b.png / a-b.png)."""
    stems = [_slug(p.stem).lower() for p in images]
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for p, stem in zip(images, stems):
        base = _slug(p.stem) if stems.count(stem) == 1 else _slug(p.name)
        name, k = base, 2
        while name.lower() in taken:
            name, k = f"{base}-{k}", k + 1
        taken.add(name.lower())
        names[p] = name
    return names


def _result_dir(out: Path, name: str, preset: str, data: bytes) -> Path:
    """out/<name>/<preset>, unless that folder already holds the result of another photo: then
    the first free out/<name>-N/<preset> (an existing result is never replaced by a different one)."""
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    k = 1
    while True:
        dest = out / (name if k == 1 else f"{name}-{k}") / _slug(preset)
        try:
            recorded = json.loads((dest / "run.json").read_text(encoding="utf-8"))["input"]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            recorded = None
        if (not dest.exists() or not any(dest.iterdir())) or recorded == digest:
            return dest
        k += 1


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

    from .runs import ensure_writable_dir

    out = ensure_writable_dir(Path(args.out).expanduser(), "--out")
    studio = Studio(StudioSettings(models=Path(args.models) if args.models else None, outputs=out / ".runs",
                                   device=args.device, dtype=args.dtype, backend=args.backend,
                                   rates_file=out / ".runs" / "cache" / "rates.json"))  # time-left estimates
    for msg in studio.startup_messages():
        print("warning:", msg, file=sys.stderr)
    images = _images(args.image)
    paths = [p.strip() for p in args.path.split(",") if p.strip()]
    if not paths:
        raise InputError("--path needs at least one camera preset (e.g. push-in).")
    chains = (args.chains,)  # comma-separated chain texts: the service parses them (core.contracts)
    roles = {"denoise": args.denoiser, "upscale": args.upscaler, "interpolate": args.interpolator}
    params = _parse_params(args.param)
    for name in ("elevations_deg", "azimuths_deg"):  # SV3D-P's orbit, as the SVD tool took it
        if getattr(args, name, None) is not None:
            params[name] = getattr(args, name)
    if args.commercial_only:  # refused before any photo is read, with the licence's reason
        studio.check_commercial(args.model, chains, roles)
    amount = args.amount
    distance = args.distance
    failures = 0
    names = _result_names(images)
    for image_path in images:
        try:
            image = studio.load_image(image_path)
            data = image_path.read_bytes()
        except StudioError as exc:
            print(f"{image_path}: {exc}", file=sys.stderr)
            failures += 1
            continue
        for preset in paths:
            dest = _result_dir(out, names[image_path], preset, data)
            request = JobRequest(
                image=image, image_bytes=data, image_name=image_path.name, model=args.model,
                camera=CameraSpec(mode="preset", preset=preset, amount=amount, distance=distance),
                prompt=args.prompt, negative_prompt=args.negative_prompt, seed=args.seed, params=params,
                chains=tuple(chains), roles=roles, save_frames=args.frames,
                measure_adherence=args.adherence, commercial_only=args.commercial_only,
                seconds=args.seconds, output_fps=args.fps, overlap=args.overlap,  # long shots
            )
            # The bar and the time left come from the job's timeline (measured rates), not from
            # tqdm's own extrapolation of the bar.
            bar = tqdm(total=1000, desc=f"{image_path.name} {preset}", unit="‰", leave=True,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")

            def on_progress(u) -> None:
                from .eta import format_eta

                bar.n = int(u.fraction * 1000)
                left = format_eta(u.eta_s)
                bar.set_postfix_str((f"{left} · " if left else "") + u.message[:70], refresh=False)
                bar.refresh()

            run_id = None
            try:
                events = {}
                for ev in studio.run_job(request, on_progress=on_progress):
                    run_id = ev.run_id
                    if ev.kind == "started" and ev.eta_s is not None and ev.eta_s > 60:
                        bar.write(f"{image_path.name} / {preset}: {ev.message.partition('; ')[2]}")
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


def cmd_study(args: argparse.Namespace) -> int:
    from . import study as studylib

    if args.collect:
        result = studylib.collect(Path(args.collect).expanduser())
        return _study_summary(result)
    if not args.images or not args.out:
        raise InputError("study needs --images and --out (or --collect DIR).")
    roles = {"denoise": args.denoiser, "upscale": args.upscaler}
    spec = studylib.StudySpec(
        images=tuple(studylib.find_images(args.images)), paths=studylib.parse_paths(args.paths),
        chains=studylib.parse_chains(args.chains), model=args.model, seed=args.seed,
        params=studylib.parse_assignments(args.param), roles=roles,
        stage_params=studylib.parse_stage_params(args.stage_param), prompt=args.prompt,
        negative_prompt=args.negative_prompt, amount=args.amount, distance=args.distance,
        seconds=args.seconds, commercial_only=args.commercial_only)
    from .runs import ensure_writable_dir

    out = ensure_writable_dir(Path(args.out).expanduser(), "--out")
    if args.slurm:
        options = studylib.SlurmOptions(
            job_name=args.job_name, partition=args.partition, gpus=args.gpus, cpus=args.cpus, mem=args.mem,
            time=args.time, account=args.account, max_parallel=args.max_parallel, extra=tuple(args.sbatch_option),
            setup=tuple(args.setup), python=args.python)
        script = studylib.write_slurm_array(spec, out, options, models=args.models, device=args.device,
                                            dtype=args.dtype)
        n = len(spec.cells())
        print(f"wrote {script} ({n} array task(s), one per photo x camera move)")
        if args.no_submit:
            print(f"submit with: sbatch {script}")
            return 0
        submitted, text = studylib.submit(script)
        print(text if submitted else f"sbatch is not on PATH; submit with: {text}")
        print(f"when the tasks are done: python -m core study --collect {out}")
        return 0
    task_index = args.task_index
    if task_index is not None:
        if args.task_count is not None and args.task_count != len(spec.cells()):
            raise InputError(f"The grid has {len(spec.cells())} cells but the job array was written for "
                             f"{args.task_count}; the photos or moves changed since submission.")
        out = Path(args.task_out).expanduser() if args.task_out else out / studylib.TASKS_DIR / str(task_index)
    from tqdm import tqdm

    from .service import Studio, StudioSettings

    studio = Studio(StudioSettings(models=Path(args.models) if args.models else None,
                                   outputs=out / studylib.RUNS_DIR, device=args.device, dtype=args.dtype))
    for msg in studio.startup_messages():
        print("warning:", msg, file=sys.stderr)
    bar = tqdm(total=1000, desc="study", unit="‰", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def progress(frac: float, msg: str) -> None:
        bar.n = int(frac * 1000)
        bar.set_postfix_str(msg[:50], refresh=False)
        bar.refresh()

    def on_cell(ev) -> None:
        note = f"run {ev.run_id}" if ev.status == "complete" else (ev.error or ev.status)
        bar.write(f"[{ev.index + 1}/{ev.total}] {ev.photo} / {ev.path}: "
                  f"{'already done' if ev.kind == 'skipped' else ev.status} ({note})")

    try:
        result = None
        for ev in studylib.iter_study(studio, spec, out, progress, task_index=task_index, on_cell=on_cell):
            if ev.kind == "done":
                result = ev.result
    finally:
        bar.close()
    return _study_summary(result)


def _study_summary(result) -> int:
    print(f"{result.complete} of {result.total} video(s) done -> {result.csv_path}, {result.table_path}"
          + (f", {result.plots_path}" if result.plots_path else ""))
    for w in result.warnings:
        print("warning:", w, file=sys.stderr)
    if result.incomplete:
        print(f"{len(result.incomplete)} cell(s) missing or unfinished:", file=sys.stderr)
        for c in result.incomplete:
            print(f"  task {c['index']}: {c['photo']} / {c['path']}: {c['status']}"
                  + (f" ({c['error']})" if c.get("error") else ""), file=sys.stderr)
        return 1
    return 0


# ---- measure: every metric of videos made anywhere (same core.metrics.measure as the dashboard)
def cmd_measure(args: argparse.Namespace) -> int:
    from .measure_files import format_summary, measure_files, parse_size

    if args.flow == "raft":
        from .consistency import RAFT_WEIGHTS, register_raft

        if not register_raft():
            raise InputError(f"RAFT weights are not here ({RAFT_WEIGHTS}); use --flow dis.")
    results = measure_files(args.videos, reference=args.reference,
                            common_size=parse_size(args.common_size) if args.common_size else None,
                            flow=None if args.flow == "none" else args.flow)
    if args.json:
        json.dump(results, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(format_summary(results))
    return 0


def add_measure_parser(sub) -> None:
    m = sub.add_parser("measure", help="every metric of the given videos (mp4, gif or PNG folders)")
    m.add_argument("videos", nargs="+", help="video files or PNG frame folders")
    m.add_argument("--reference", default=None, help="the input photo, for fidelity")
    m.add_argument("--common-size", default=None, metavar="WxH",
                   help="size of the common block (default: the smallest video's size)")
    m.add_argument("--flow", default="dis-fast", help="optical flow for the motion-compensated measures "
                                                      "(dis-fast, dis, raft when its weights are present, none)")
    m.add_argument("--json", action="store_true", help="one JSON object keyed by file name on stdout")
    m.set_defaults(func=cmd_measure)
# ---- end measure


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
    g.add_argument("--interpolator", default="dis-interp",
                   help="stage used for 'interpolate' (x2 frame rate; default dis-interp, or rife)")
    g.add_argument("--prompt", default="", help="text prompt for AI generators")
    g.add_argument("--negative-prompt", default="", help="negative prompt for AI generators")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--param", action="append", default=[], help="generator parameter NAME=VALUE (repeatable)")
    g.add_argument("--elevations-deg", default=None,
                   help='SV3D-P: one elevation or 21 like "[10,15,20,...]" (the photo\'s view last); replaces --path')
    g.add_argument("--azimuths-deg", default=None,
                   help='SV3D-P: 21 azimuths like "[17,34,...,0]" relative to the last (the photo\'s view)')
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--frames", action="store_true", help="also write the PNG frames the metrics used")
    g.add_argument("--seconds", type=float, default=None,
                   help="shot length; AI models chain segments of their native length (default: one clip)")
    g.add_argument("--fps", type=float, default=None,
                   help="output frame rate with --seconds (AI frames are interpolated to it)")
    g.add_argument("--overlap", type=int, default=1, help="frames shared by consecutive segments (default 1)")
    g.add_argument("--commercial-only", action="store_true",
                   help="refuse models whose licence does not allow commercial use (e.g. Upscale-A-Video), with the reason")
    g.add_argument("--adherence", action="store_true",
                   help="score how well each video follows its camera path (structure from motion)")
    g.add_argument("--models", default=None, help="model registry (default models.json)")
    g.add_argument("--device", default="auto")
    g.add_argument("--dtype", default="auto")
    g.add_argument("--backend", default="torch", choices=["torch", "openvino", "openvino-int8"],
                   help="CamI2V and SVD through OpenVINO on the CPU (optional package): openvino computes in "
                        "float32 and matches PyTorch; openvino-int8 uses int8 weights and bfloat16 where the CPU "
                        "has it (about 3x faster). The first run per size converts (minutes, ~19 GiB at 256x256), "
                        "later runs read ckpts/openvino-cache")
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser("study", help="photos x camera moves x chains, resumable, with CSV/table/plots")
    s.add_argument("--images", action="append", default=[], help="a photo or a folder of photos (repeatable)")
    s.add_argument("--paths", default="push-in,slide-left,pan-left", help="comma-separated camera presets")
    s.add_argument("--chains", default="all", help="comma-separated chains, or all (the five standard ones)")
    s.add_argument("--model", default="kenburns", help="generator name from models.json (default kenburns)")
    s.add_argument("--out", default=None, help="study folder (created; re-running resumes it)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--param", action="append", default=[], help="generator parameter NAME=VALUE (repeatable)")
    s.add_argument("--stage-param", action="append", default=[],
                   help="post-processing parameter STAGE.NAME=VALUE, e.g. lanczos.scale=2 (repeatable)")
    s.add_argument("--denoiser", default="nlmeans", help="stage used for 'denoise' (default nlmeans)")
    s.add_argument("--upscaler", default="lanczos", help="stage used for 'upscale' (default lanczos)")
    s.add_argument("--prompt", default="", help="text prompt for AI generators")
    s.add_argument("--negative-prompt", default="", help="negative prompt for AI generators")
    s.add_argument("--amount", type=float, default=None, help="move amount (default: each preset's)")
    s.add_argument("--distance", type=float, default=None, help="translation scale (default: each preset's)")
    s.add_argument("--seconds", type=float, default=None, help="shot length in seconds (default: the model's clip)")
    s.add_argument("--commercial-only", action="store_true",
                   help="refuse models whose licence does not allow commercial use, with the reason")
    s.add_argument("--models", default=None, help="model registry (default models.json)")
    s.add_argument("--device", default="auto")
    s.add_argument("--dtype", default="auto")
    s.add_argument("--collect", default=None, metavar="DIR",
                   help="merge DIR/tasks/<i>/ (job-array results) and DIR's own cells into DIR's reports")
    c = s.add_argument_group("SLURM job array")
    c.add_argument("--slurm", action="store_true", help="write a job array (one task per photo x move) and submit it")
    c.add_argument("--no-submit", action="store_true", help="with --slurm: write the script only")
    c.add_argument("--partition", default="gpu")
    c.add_argument("--gpus", type=int, default=1, help="GPUs per task (--gres=gpu:N; 0 for none)")
    c.add_argument("--cpus", type=int, default=8, help="CPUs per task")
    c.add_argument("--mem", default=None, help="memory per task, e.g. 64G")
    c.add_argument("--time", default="02:00:00", help="time limit per task (HH:MM:SS)")
    c.add_argument("--account", default=None)
    c.add_argument("--job-name", default="cami2v-study")
    c.add_argument("--max-parallel", type=int, default=None, help="at most this many tasks at once (%%N)")
    c.add_argument("--sbatch-option", action="append", default=[], help="another sbatch option, e.g. --qos=short")
    c.add_argument("--setup", action="append", default=[], help="a shell line run before each task, e.g. "
                                                                 "'module load 2023' (repeatable)")
    c.add_argument("--python", default=None, help="python executable on the nodes (default: this one)")
    c.add_argument("--task-index", type=int, default=None, help=argparse.SUPPRESS)
    c.add_argument("--task-count", type=int, default=None, help=argparse.SUPPRESS)
    c.add_argument("--task-out", default=None, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_study)
    add_measure_parser(sub)

    from .tour_cli import add_tour_parser  # python -m core tour (core/tour_cli.py)

    add_tour_parser(sub)
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
