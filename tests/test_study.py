"""The study runner: a photos x moves grid through the real service (embedded generator, OpenCV
stages on tiny clips), resuming after interruptions, its CSV/table/plots, SLURM job arrays and
`--collect`, the CLI, and the Study tab's handler."""

from __future__ import annotations

import csv
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import metrics as metriclib
from core import study as studylib
from core.errors import InputError
from core.service import Studio, StudioSettings

REPO = Path(__file__).resolve().parents[1]
# Tiny clips keep NL-means (the slow stage) to a fraction of a second per chain.
PARAMS = {"width": 64, "height": 48, "num_frames": 6}
STAGES = {"lanczos": {"scale": 2}, "nlmeans": {"search_window": 11, "template_window": 3, "temporal_window": 3}}
CLI_SMALL = ["--param", "width=64", "--param", "height=48", "--param", "num_frames=6",
             "--stage-param", "lanczos.scale=2", "--device", "cpu"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    for name in ("kitchen", "bedroom"):
        Image.open(REPO / "assets" / "examples" / f"{name}.jpg").resize((120, 80)).save(d / f"{name}.png")
    (d / "notes.txt").write_text("not a photo")
    return d


def make_studio(outputs: Path) -> tuple[Studio, list[int]]:
    """A CPU studio whose kenburns generator counts its calls."""
    studio = Studio(StudioSettings(outputs=outputs, device="cpu"))
    gen = studio.generator("kenburns")
    calls = [0]
    original = gen.generate

    def counting(request, progress=None):
        calls[0] += 1
        return original(request, progress)

    gen.generate = counting
    return studio, calls


def spec_for(photos: Path, chains=studylib.STANDARD_CHAINS, paths=("push-in", "pan-left")) -> studylib.StudySpec:
    return studylib.StudySpec(tuple(studylib.find_images(photos)), paths, chains, "kenburns", seed=5,
                              params=PARAMS, stage_params=STAGES)


class Boom(Exception):
    """Stands for a crash (or a kill) in the middle of the study."""


@pytest.fixture(scope="module")
def finished(photos, tmp_path_factory):
    """2 photos x 2 moves x 5 chains, interrupted twice and resumed: after the 2nd cell through
    the on_cell hook, then in the middle of the 4th cell's job; the third call finishes it."""
    out = tmp_path_factory.mktemp("study")
    spec = spec_for(photos)
    log: dict[str, object] = {}

    studio, calls = make_studio(out / "runs")

    def stop_after_two(ev):
        if ev.kind == "cell" and ev.index == 1:
            raise Boom("stopped after two cells")

    with pytest.raises(Boom):
        for _ in studylib.iter_study(studio, spec, out, on_cell=stop_after_two):
            pass
    log["first_calls"] = calls[0]
    log["first_state"] = json.loads((out / "study.json").read_text())

    studio, calls = make_studio(out / "runs")
    crash_cell = "kitchen.png / pan-left"

    def crash(frac, msg):
        if msg.startswith(crash_cell) and "nlmeans" in msg:
            raise Boom("killed mid-job")

    with pytest.raises(Boom):
        for _ in studylib.iter_study(studio, spec, out, crash):
            pass
    log["second_calls"] = calls[0]
    log["second_state"] = json.loads((out / "study.json").read_text())

    studio, calls = make_studio(out / "runs")
    events = []
    result = studylib.run_study(studio, photos, "push-in,pan-left", "all", "kenburns", out, seed=5,
                                params=PARAMS, stage_params=STAGES, on_cell=events.append)
    log["third_calls"] = calls[0]
    log["third_events"] = [(e.kind, e.photo, e.path) for e in events]
    return out, result, log, studio


def test_interrupted_study_redoes_only_missing_cells(finished):
    out, result, log, studio = finished
    cells = log["first_state"]["cells"]
    assert log["first_calls"] == 2
    assert sorted(c["status"] for c in cells.values()) == ["complete", "complete"]
    # second call: the two finished cells are skipped, the third runs, the fourth dies mid-job
    assert log["second_calls"] == 2
    by_cell = {(c["photo"], c["path"]): c for c in log["second_state"]["cells"].values()}
    assert by_cell[("kitchen.png", "pan-left")]["status"] == "interrupted"
    assert "killed mid-job" in by_cell[("kitchen.png", "pan-left")]["error"]
    dead_run = studio.open_run(by_cell[("kitchen.png", "pan-left")]["run_id"])
    assert dead_run.status == "failed"
    # third call: only the interrupted cell is generated again
    assert log["third_calls"] == 1
    assert [k for k, *_ in log["third_events"]] == ["skipped", "skipped", "skipped", "cell"]
    assert log["third_events"][-1][1:] == ("kitchen.png", "pan-left")
    state = json.loads((out / "study.json").read_text())
    assert [c["status"] for c in state["cells"].values()] == ["complete"] * 4
    assert result.complete == result.total == 4 and not result.incomplete


def test_csv_rows_match_the_runs(finished):
    out, result, log, studio = finished
    with open(out / "study.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 5
    assert {(r["photo"], r["path"], r["chain"]) for r in rows} == {
        (p, m, c) for p in ("bedroom.png", "kitchen.png") for m in ("push-in", "pan-left")
        for c in studylib.STANDARD_CHAINS}
    for col in ("tpsnr_mean", "tssim_std", "common_tpsnr_mean", "study_tssim_mean", "tmse_mean",
                "sharpness_mean", "brightness_mean", "fidelity_psnr", "fidelity_ssim", "run_id", "model", "seed"):
        assert all(r[col] != "" for r in rows), col
    assert {r["seed"] for r in rows} == {"5"} and {r["model"] for r in rows} == {"kenburns"}
    sizes = {r["chain"]: (int(r["width"]), int(r["height"])) for r in rows}
    assert sizes["none"] == (64, 48) and sizes["upscale"] == (128, 96) and sizes["upscale+denoise"] == (128, 96)
    # every number is the one the run recorded
    for r in rows[:5] + rows[-5:]:
        run = studio.open_run(r["run_id"])
        m = run.data["chains"][r["chain"]]["metrics"]
        assert float(r["tpsnr_mean"]) == pytest.approx(m["native"]["tpsnr"]["mean"], rel=1e-12)
        assert float(r["common_tssim_mean"]) == pytest.approx(m["common"]["tssim"]["mean"], rel=1e-12)
        assert float(r["study_tssim_mean"]) == pytest.approx(m["study"]["tssim"]["mean"], rel=1e-12)
        assert float(r["fidelity_ssim"]) == pytest.approx(m["fidelity"]["native"]["ssim"], rel=1e-12)
        assert (studio.settings.outputs / r["video"]).is_file()
    # the four cells are four distinct runs
    assert len({r["run_id"] for r in rows}) == 4


def test_table_is_mean_and_std_of_per_video_means(finished):
    out, result, log, studio = finished
    assert set(result.tables) == {"native", "common", "study"}
    for variant, col in (("native", "tpsnr_mean"), ("common", "common_tssim_mean"), ("study", "study_tssim_mean")):
        metric = "tpsnr" if "tpsnr" in col else "tssim"
        row = next(r for r in result.tables[variant] if r["metric"] == metric)
        for chain in studylib.STANDARD_CHAINS:
            vals = np.array([r[col] for r in result.rows if r["chain"] == chain])
            assert len(vals) == 4
            assert row["cells"][chain]["mean"] == pytest.approx(vals.mean(), rel=1e-12)
            assert row["cells"][chain]["std"] == pytest.approx(vals.std(), rel=1e-9)
    md = (out / "table.md").read_text()
    assert md == result.markdown
    assert md.count("| | none | denoise | upscale | denoise+upscale | upscale+denoise |") == 3
    cell = result.tables["native"][0]["cells"]["none"]["text"]
    assert cell in md and "4 of 4 videos" in md


def test_plots_html_is_standalone(finished):
    out, result, log, studio = finished
    html = (out / "plots.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    # plotly.js is inlined once and nothing is loaded from elsewhere: the file works offline
    assert html.count("plotly.js v") == 1 and "<script src" not in html
    assert html.count("Plotly.newPlot") == len(result.figures()) >= 11
    for title in studylib.PLOT_METRICS.values():
        assert title in html
    fig = result.figures()["tpsnr_mean"]
    assert [t.name for t in fig.data] == list(studylib.STANDARD_CHAINS)
    assert all(len(t.y) == 4 for t in fig.data)


def test_zip_study_holds_reports_and_videos(finished):
    import zipfile

    out, result, log, studio = finished
    with zipfile.ZipFile(studylib.zip_study(out)) as zf:
        names = set(zf.namelist())
        index = zf.read("videos/index.csv").decode().splitlines()
    assert {"study.csv", "table.md", "plots.html", "study.json"} <= names
    assert len([n for n in names if n.startswith("videos/cell-") and n.endswith(".mp4")]) == 20
    assert len([n for n in names if n.startswith("cells/")]) == 4
    assert len(index) == 21 and index[0] == "file,photo,path,chain,run_id"


def test_other_settings_and_a_second_runner_are_refused(finished, photos):
    out, result, log, studio = finished
    other = studylib.StudySpec(tuple(studylib.find_images(photos)), ("push-in",), ("none",), "kenburns", seed=6,
                               params=PARAMS, stage_params=STAGES)
    with pytest.raises(InputError, match=r"other settings \(chains: .*now \[\"none\"\]"):
        next(studylib.iter_study(studio, other, out))
    with studylib._folder_lock(out):
        with pytest.raises(InputError, match="Another study runner"):
            next(studylib.iter_study(studio, spec_for(photos), out))


def test_reports_read_adherence_defensively(tmp_path):
    """Adherence scores (from the teammate's scorer) become columns and box plots wherever
    they are numbers; other shapes are ignored."""
    rng = np.random.default_rng(0)
    m = metriclib.measure(rng.integers(0, 255, (4, 24, 32, 3), dtype=np.uint8), common_size=(32, 24), study=True)
    records = []
    scored = {"available": True, "estimator": "opencv", "RotErr": 0.1, "RotErr_deg": 5.7, "TransErr": 0.25,
              "CamMC": 0.5, "per_frame": {"rot_err_deg": [0.0, 5.7]}, "frames": 4, "seconds": 0.2}
    for i, adh in enumerate((scored, {"available": False, "reason": "too few matches"}, "n/a", None)):
        chains = {"none": {"metrics": {**m, **({"adherence": adh} if adh is not None else {})}, "video": "x"}}
        records.append({"index": i, "photo": "=cmd()-.png" if i == 1 else f"p{i}.png", "path": "push-in", "model": "kenburns", "seed": 0,
                        "run_id": f"r{i}", "chains": chains})
    (tmp_path / "cells").mkdir()
    cells = {}
    for r in records:
        f = f"cells/{r['index']:016x}.json"
        (tmp_path / f).write_text(json.dumps(r))
        cells[studylib.cell_key(r["photo"], r["path"])] = {"index": r["index"], "photo": r["photo"], "path": r["path"],
                                                   "status": "complete", "file": f}
    state = {"kind": "study", "settings": {"model": "kenburns", "chains": ["none"]}, "cells": cells}
    res = studylib.write_reports(tmp_path, [state])
    header = (tmp_path / "study.csv").read_text().splitlines()[0].split(",")
    assert header[-9:] == ["adherence_CamMC", "adherence_RotErr", "adherence_RotErr_deg", "adherence_TransErr",
                           "adherence_available", "adherence_frames", "adherence_seconds", "run_id", "video"]
    assert [r.get("adherence_RotErr_deg") for r in res.rows] == [5.7, None, None, None]
    assert [r.get("adherence_available") for r in res.rows] == [1.0, 0.0, None, None]
    # a photo name that a spreadsheet would run as a formula is written as text
    assert (tmp_path / "study.csv").read_text().splitlines()[2].startswith("'=cmd()-.png,push-in,none")
    plotted = [k for k in res.figures() if k.startswith("adherence_")]
    assert plotted == ["adherence_CamMC", "adherence_RotErr_deg", "adherence_TransErr"]


def test_slurm_array_script(photos, tmp_path):
    spec = studylib.StudySpec(tuple(studylib.find_images(photos)), ("push-in", "pan-left", "slide-left"), ("none",),
                              "kenburns", params=PARAMS)
    opts = studylib.SlurmOptions(partition="gpu_h100", time="00:30:00", gpus=2, max_parallel=3, account="proj1",
                                 mem="32G", extra=("--qos=short",), setup=("export OMP_NUM_THREADS=2",),
                                 python=sys.executable)
    out = tmp_path / "array"
    script = studylib.write_slurm_array(spec, out, opts, device="cpu")
    text = script.read_text()
    assert os.stat(script).st_mode & stat.S_IXUSR
    for line in ("#SBATCH --array=0-5%3", "#SBATCH --partition=gpu_h100", "#SBATCH --gres=gpu:2",
                 "#SBATCH --time=00:30:00", "#SBATCH --account=proj1", "#SBATCH --mem=32G", "#SBATCH --qos=short",
                 f"#SBATCH --output={out.resolve()}/logs/task-%A_%a.out", "export OMP_NUM_THREADS=2"):
        assert line in text.splitlines(), line
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    cmd = shlex.split(text.strip().splitlines()[-1].replace('"$TASK"', "TASKNO"))
    assert cmd[:4] == [sys.executable, "-m", "core", "study"]
    i = cmd.index("--task-index")
    assert cmd[i + 1] == "TASKNO" and cmd[cmd.index("--task-count") + 1] == "6"
    assert cmd[cmd.index("--task-out") + 1] == f"{out.resolve()}/tasks/TASKNO"
    assert [cmd[k + 1] for k, a in enumerate(cmd) if a == "--images"] == [str(p) for p in spec.images]
    assert cmd[cmd.index("--paths") + 1] == "push-in,pan-left,slide-left"
    assert "width=64" in cmd and cmd[cmd.index("--device") + 1] == "cpu"
    manifest = json.loads((out / "study-array.json").read_text())
    assert manifest["tasks"] == 6 and [c["index"] for c in manifest["cells"]] == list(range(6))
    with pytest.raises(InputError):
        studylib.SlurmOptions(partition="gpu\n#SBATCH --bad")
    with pytest.raises(InputError):
        studylib.SlurmOptions(extra=("qos=short",))


def test_array_tasks_and_collect(photos, tmp_path):
    """Task 1 runs through the written script itself; 0 and 2 in-process; 3 dies; 4-5 never ran."""
    spec = studylib.StudySpec(tuple(studylib.find_images(photos)), ("push-in", "pan-left", "slide-left"),
                              ("none", "upscale"), "kenburns", params=PARAMS, stage_params={"lanczos": {"scale": 2}})
    out = tmp_path / "array"
    script = studylib.write_slurm_array(spec, out, studylib.SlurmOptions(python=sys.executable), device="cpu")
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "tasks" / "1" / "study.json").read_text())["task_index"] == 1
    assert not (out / "tasks" / "1" / "plots.html").exists()  # plots are collect's job
    for i in (0, 2):
        studio = Studio(StudioSettings(outputs=out / "tasks" / str(i) / "runs", device="cpu"))
        list(studylib.iter_study(studio, spec, out / "tasks" / str(i), task_index=i))
    studio = Studio(StudioSettings(outputs=out / "tasks" / "3" / "runs", device="cpu"))

    def die(frac, msg):
        if frac > 0.3:
            raise Boom("node lost")

    with pytest.raises(Boom):
        list(studylib.iter_study(studio, spec, out / "tasks" / "3", die, task_index=3))
    (out / "tasks" / "7-not-a-task").mkdir()

    result = studylib.collect(out)
    assert result.total == 6 and result.complete == 3
    assert [(c["index"], c["status"]) for c in result.incomplete] == [(3, "interrupted"), (4, "missing"),
                                                                        (5, "missing")]
    with open(out / "study.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["photo"], r["path"], r["chain"]) for r in rows] == [
        ("bedroom.png", m, c) for m in ("push-in", "pan-left", "slide-left") for c in ("none", "upscale")]
    assert (out / "plots.html").is_file()
    assert "3 of 6 videos" in (out / "table.md").read_text()
    assert "kitchen.png / push-in (interrupted)" in result.markdown
    with pytest.raises(InputError):
        studylib.iter_study(studio, spec, out / "x", task_index=6).__next__()


def run_cli(*args, env=None):
    e = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "core", "study", *args], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=300)


def test_cli_study_slurm_and_collect(photos, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "kitchen.png").write_bytes((photos / "kitchen.png").read_bytes())
    out = tmp_path / "cli"
    r = run_cli("--images", str(one), "--paths", "push-in", "--chains", "none,upscale", "--out", str(out), *CLI_SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 of 1 video(s) done" in r.stdout
    with open(out / "study.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(x["chain"], x["width"]) for x in rows] == [("none", "64"), ("upscale", "128")]
    assert (out / "runs" / rows[0]["run_id"] / "run.json").is_file()
    # re-running a finished study generates nothing and succeeds
    r = run_cli("--images", str(one), "--paths", "push-in", "--chains", "none,upscale", "--out", str(out), *CLI_SMALL)
    assert r.returncode == 0 and "already done" in r.stdout
    r = run_cli("--collect", str(out))
    assert r.returncode == 0 and "1 of 1 video(s) done" in r.stdout

    # --slurm submits through sbatch when it is on PATH
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "sbatch"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {shlex.quote(str(tmp_path / 'sbatch-args'))}\n"
                    "echo 'Submitted batch job 4242'\n")
    fake.chmod(0o755)
    arr = tmp_path / "arr"
    r = run_cli("--images", str(photos), "--paths", "push-in,pan-left", "--out", str(arr), "--slurm",
                "--partition", "gpu_a100", "--time", "01:00:00", *CLI_SMALL,
                env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    assert "Submitted batch job 4242" in r.stdout
    assert (tmp_path / "sbatch-args").read_text().strip() == str((arr / "study-array.sh").resolve())
    text = (arr / "study-array.sh").read_text()
    assert "#SBATCH --array=0-3" in text and "#SBATCH --partition=gpu_a100" in text
    r = run_cli("--collect", str(arr))
    assert r.returncode == 1 and "4 cell(s) missing or unfinished" in r.stderr and "Traceback" not in r.stderr

    r = run_cli("--images", str(one), "--paths", "spin-around", "--out", str(tmp_path / "bad"), "--device", "cpu")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: Unknown camera preset 'spin-around'")
    r = run_cli("--paths", "push-in")
    assert r.returncode == 2 and "needs --images and --out" in r.stderr


def test_study_tab_handler_runs_a_study(photos, tmp_path, monkeypatch):
    import gradio as gr

    from ui.study_tab import build_study_tab

    # photos must come from gradio's upload folder; a server path sent by a client is refused
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    upload = tmp_path / "gradio" / "abc123" / "bedroom.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes((photos / "bedroom.png").read_bytes())

    studio = Studio(StudioSettings(outputs=tmp_path / "outputs", device="cpu"))
    with gr.Blocks() as demo:
        with gr.Tab("Study"):
            comps = build_study_tab(studio)
    fns = {f.api_name: f for f in demo.fns.values()}
    assert fns["study"].concurrency_id == "gpu" and fns["study"].concurrency_limit == 1
    job = fns["new_job"].fn()
    # the tab has no size controls (the preview renders 512x320): keep to the cheapest chain
    with pytest.raises(gr.Error, match="uploaded"):
        list(fns["study"].fn(job, [str(photos / "bedroom.png")], False, ["static"], ["none"], "kenburns",
                             "nlmeans", "lanczos", 3, "tssim_mean"))
    assert not (tmp_path / "outputs" / "studies").exists() or not any((tmp_path / "outputs" / "studies").iterdir())
    outs = list(fns["study"].fn(job, [str(upload)], False, ["static", "push-in"], ["none"],
                                "kenburns", "nlmeans", "lanczos", 3, "tssim_mean"))
    last = outs[-1]
    assert "badge-ok" in last[comps["status"]] and "2 of 2" in last[comps["status"]]
    assert "| | none |" in last[comps["table"]]
    assert [(r["path"], r["width"]) for r in last[comps["rows"]]] == [("static", 512), ("push-in", 512)]
    files = [Path(f) for f in last[comps["downloads"]]]
    assert [f.name for f in files] == ["study.csv", "table.md", "stats.csv", "plots.html", "study.zip"]
    assert all(f.is_file() and f.parent.parent == tmp_path / "outputs" / "studies" for f in files)
    assert [t.name for t in last[comps["plot"]].data] == ["none"]
    # Cancel stops the study at its next step and says so
    job = fns["new_job"].fn()
    assert fns["cancel"].fn(job).startswith("Cancelling")
    outs = list(fns["study"].fn(job, [str(upload)], False, ["static"], ["none"],
                                "kenburns", "nlmeans", "lanczos", 3, "tssim_mean"))
    assert "badge-error" in outs[-1][comps["status"]] and "Cancelled" in outs[-1][comps["status"]]
    assert fns["cancel"].fn(job) == "Nothing is running."
    assert fns["figure"].fn(last[comps["rows"]], "tpsnr_mean").data[0].y[0] == last[comps["rows"]][0]["tpsnr_mean"]


def test_paired_statistics_in_reports(finished):
    import csv as csvlib

    from core import stats as statslib

    out, result, log, studio = finished
    rows = list(csvlib.DictReader((out / studylib.STATS_FILE).open()))
    pairs = {(r["metric"], r["chain"], r["baseline"]) for r in rows}
    for chain in studylib.STANDARD_CHAINS[1:]:
        assert ("warp_psnr_mean", chain, "none") in pairs and ("noise_sigma_mean", chain, "none") in pairs
    # the numbers are the paired statistics of the CSV's per-video values
    r = next(r for r in rows if r["metric"] == "lap_var_mean" and r["chain"] == "upscale")
    up = [x["lap_var_mean"] for x in result.rows if x["chain"] == "upscale"]
    none = [x["lap_var_mean"] for x in result.rows if x["chain"] == "none"]
    ref = statslib.paired(up, none)
    assert int(r["n"]) == ref.n == 4 and float(r["mean_diff"]) == pytest.approx(ref.mean_diff)
    assert "## Paired statistics: every chain vs none" in result.markdown
    assert "paired:warp_psnr_mean" in result.figures()
