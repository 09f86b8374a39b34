"""The dashboard's handlers without a browser: one clear error line, results that name their
model, downloads named by chain, "Show in Create" restoring a run, the Runs and Models tables,
and an API page that lists the public endpoints only."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import ImageData
from PIL import Image

from core.errors import InputError, StudioError
from core.runs import RunSummary
from core.service import CameraSpec, JobRequest, Studio, StudioSettings
from ui import feedback
from ui.runs_models import MODEL_HEADERS, model_rows, run_rows

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    root = tmp_path_factory.mktemp("dash")
    return Studio(StudioSettings(root=root, outputs=root / "out", models=REPO / "models.json",
                                 min_free_bytes=0, device="cpu"))


@pytest.fixture(scope="module")
def ui(studio):
    from ui.app import build_ui

    demo, _ = build_ui(studio)
    return demo


def handler(demo: gr.Blocks, name: str):
    fns = [f for f in demo.fns.values() if getattr(f, "name", None) == name]
    assert fns, f"no handler {name}"
    return fns[0]


def outputs_by_label(fn, result: dict) -> dict[str, object]:
    """{elem_id or label: value} of a handler's dict result."""
    out = {}
    for comp, value in result.items():
        key = getattr(comp, "elem_id", None) or getattr(comp, "label", None) or type(comp).__name__
        out[key] = value
    return out


# ------------------------------------------------------------------------------ one error line

def test_queue_limits_are_set_by_build_ui(studio):
    """One event per handler at a time and a bounded line, set before the components exist (the
    start-up then builds the app once less)."""
    from ui.app import build_ui

    demo, _ = build_ui(studio, max_queue=5)
    assert demo._queue.max_size == 5
    assert demo._queue.default_concurrency_limit == 1


def test_error_line_is_one_line_without_server_paths():
    exc = InputError("Cannot read /srv/app/gradio/abc123/notimage.png:\n  bad header")
    line = feedback.error_line(exc)
    assert "\n" not in line and "/srv" not in line and "notimage.png" in line
    assert feedback.error_line(KeyError("x")) == "Unexpected error (KeyError); details are in the server log."


def test_status_lines_use_text_badges_not_emoji():
    for text in (feedback.status_error(StudioError("Unknown chain 'blur'.")), feedback.status_ok("Run x complete."),
                 feedback.status_note("Model unavailable.")):
        assert 'class="badge' in text
        assert all(ord(ch) < 0x2190 for ch in text), text  # no pictographs / emoji
    assert ">Error</span> Unknown chain 'blur'." in feedback.status_error(StudioError("Unknown chain 'blur'."))


def test_a_non_image_png_gives_the_clis_line(tmp_path, studio):
    bad = tmp_path / "notimage.png"
    bad.write_bytes(b"this is not a picture at all" * 10)
    comp = feedback.PhotoInput(type="filepath")
    assert comp.get_block_name() == "image"
    with pytest.raises(Exception):
        gr.Image(type="filepath").preprocess(ImageData(path=str(bad), orig_name="notimage.png"))
    got = comp.preprocess(ImageData(path=str(bad), orig_name="notimage.png"))
    assert got == str(bad)
    with pytest.raises(InputError) as info:
        studio.load_image(got)
    assert str(info.value) == "notimage.png is not an image (or a format this app cannot read)."
    good = tmp_path / "good.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(good)
    assert Path(comp.preprocess(ImageData(path=str(good), orig_name="good.png"))).exists()


def test_load_photo_keeps_the_last_good_photo_and_warns_once(ui, tmp_path, monkeypatch):
    load = handler(ui, "load_photo").fn
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x00" * 64)
    warnings = []
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: warnings.append(msg))
    monkeypatch.setattr("ui.create_tab.uploaded_file", lambda p, what: Path(p))
    out = load(str(bad), "kenburns", [(0.5, 0.5)])
    assert all(isinstance(o, dict) and o.get("__type__") == "update" and "value" not in o for o in out)
    assert warnings == ["x.png is not an image (or a format this app cannot read)."]


# ------------------------------------------------------------------------------ names on results

def test_results_name_their_model():
    assert feedback.generator_caption("kenburns", "Ken Burns preview (no AI)", is_ai=False) == \
        "Ken Burns · no-AI preview"
    assert feedback.generator_caption("cami2v-512", "CamI2V 512x320") == "CamI2V 512x320"
    assert feedback.download_name("denoise+upscale", "cami2v-512") == "denoise+upscale__cami2v-512.mp4"
    assert feedback.download_name("none", "kenburns", is_ai=False) == "none__kenburns-no-AI-preview.mp4"
    assert feedback.download_name("../x y", "m/../n") == "x-y__m-n.mp4"


def test_named_downloads_link_the_chain_videos(tmp_path):
    (tmp_path / "chain-00.mp4").write_bytes(b"a" * 10)
    (tmp_path / "chain-01.mp4").write_bytes(b"b" * 12)
    got = feedback.named_downloads(tmp_path, {"none": tmp_path / "chain-00.mp4",
                                              "upscale": tmp_path / "chain-01.mp4"}, "kenburns", is_ai=False)
    assert [Path(g).name for g in got] == ["none__kenburns-no-AI-preview.mp4", "upscale__kenburns-no-AI-preview.mp4"]
    assert Path(got[1]).read_bytes() == b"b" * 12
    assert feedback.named_downloads(tmp_path, {"none": tmp_path / "chain-00.mp4"}, "kenburns", False) == got[:1]


def test_camera_export_is_prepared_per_path_text(tmp_path):
    a = feedback.camera_export_path(tmp_path, "path A\n", "push-in")
    b = feedback.camera_export_path(tmp_path, "path B\n", "push-in")
    assert a != b and a.read_text() == "path A\n" and b.read_text() == "path B\n"
    assert feedback.camera_export_path(tmp_path, "path A\n", "push-in") == a


# ------------------------------------------------------------------------------ Show in Create

@pytest.fixture(scope="module")
def past_run(studio):
    rng = np.random.default_rng(0)
    image = rng.integers(30, 220, (200, 320, 3), dtype=np.uint8)
    request = JobRequest(image=image, model="kenburns", prompt="a bright room", seed=77,
                         camera=CameraSpec(preset="pan-left", amount=0.1, distance=1.3, easing="ease-in-out"),
                         params={"width": 64, "height": 40, "num_frames": 4}, chains=("none", "lanczos"))
    events = list(studio.run_job(request))
    return events[-1].run_id


def test_show_in_create_restores_photo_camera_chains(ui, studio, past_run):
    fn = handler(ui, "open_run")
    result = fn.fn(past_run, "native")
    by_id = {}
    for comp, value in result.items():
        by_id[getattr(comp, "elem_id", None) or getattr(comp, "label", None)] = value
    assert by_id["model"] == "kenburns"
    assert by_id["cam-mode"] == "Preset" and by_id["preset"] == "pan-left"
    assert by_id["Move amount"] == 0.1 and by_id["Distance"] == 1.3 and by_id["Speed"] == "ease-in-out"
    assert by_id["chains"] == ["none"] and by_id["Custom chains (comma-separated)"] == "lanczos"
    assert by_id["prompt"] == "a bright room" and by_id["Seed"] == 77
    photo_path = Path(by_id["photo"])
    assert photo_path.parent.name == past_run and photo_path.name.startswith("input.")
    state = next(v for c, v in result.items() if isinstance(v, np.ndarray))
    assert state.shape == (200, 320, 3)
    # the players, table and downloads name the generator; downloads carry the chain's name
    players = by_id["players"]
    assert "Ken Burns · no-AI preview" in players
    assert "made by **Ken Burns · no-AI preview**" in by_id["table"]
    assert "zoomed in" in by_id["table"] or "stays inside the photo" in by_id["table"]
    names = sorted(Path(f).name for f in by_id["Downloads"])
    assert names == ["lanczos__kenburns-no-AI-preview.mp4", "none__kenburns-no-AI-preview.mp4"]
    # the restored photo passes the photo handler (it is the run's own input, not an upload)
    image, _, wps = handler(ui, "load_photo").fn(str(photo_path), "kenburns", [])
    assert isinstance(image, np.ndarray) and image.shape == (200, 320, 3)


def test_show_in_create_errors_are_one_status_line(ui):
    fn = handler(ui, "open_run").fn
    for run_id in ("", "20990101-000000-000000-abcdef"):
        result = fn(run_id, "native")
        assert len(result) == 1
        (value,) = result.values()
        assert 'badge-error' in value and "\n" not in value


# ------------------------------------------------------------------------------ tables, API page

def test_models_table_lists_captioners_with_licence_before_reasons(studio):
    rows = model_rows(studio.model_infos())
    names = [r[0] for r in rows]
    assert {"qwen2-vl-7b-awq", "qwen2-vl-7b", "qwen2-vl-2b"} <= set(names)
    assert MODEL_HEADERS.index("licence") < MODEL_HEADERS.index("why not")
    assert all(r[MODEL_HEADERS.index("available")] in ("yes", "no") for r in rows)


def test_runs_table_names_photo_generator_and_separates_study_cells(tmp_path):
    (tmp_path / "studies" / "s1").mkdir(parents=True)
    (tmp_path / "studies" / "s1" / "study.json").write_text(json.dumps(
        {"kind": "study", "cells": {"a": {"run_id": "r-study"}}}))
    (tmp_path / "r-normal").mkdir()
    (tmp_path / "r-normal" / "input.jpg").write_bytes(b"x")
    data = {"params": {"model": "kenburns"}, "input": {"file": "input.jpg", "original_name": "kitchen.jpg"}}
    summaries = [RunSummary("r-normal", tmp_path / "r-normal", "complete", created="2026-12-03T20:00:00Z",
                            chains=["none", "upscale"], data=data),
                 RunSummary("r-study", tmp_path / "r-study", "failed", error="Out of memory", chains=["none"],
                            data={"params": {"model": "kenburns"}})]
    rows = run_rows(summaries, tmp_path, {"kenburns": "Ken Burns preview (no AI)"})
    assert len(rows.runs) == 1 and len(rows.study) == 1
    photo, generator, chains, status, created, run, error = rows.runs[0]
    assert "kitchen.jpg" in photo and 'class="thumb"' in photo
    assert generator == "Ken Burns preview (no AI)" and chains == "none, upscale" and status == "complete"
    assert rows.study[0][-1] == "Out of memory" and "study s1" in rows.study[0][5]
    assert rows.openable[0] == ("r-normal · kitchen.jpg · Ken Burns preview (no AI)", "r-normal")


def test_api_page_lists_only_public_endpoints(ui):
    info = ui.get_api_info()
    named = sorted(k.strip("/") for k in info["named_endpoints"])
    assert named == sorted(feedback.PUBLIC_API)


def test_export_names_the_generator_and_says_when_a_run_is_partial(studio, past_run, tmp_path):
    from core import exports
    from core.runs import Run

    res = exports.export_run(studio.open_run(past_run), tmp_path / "done", formats=["mp4", "metrics-json"])
    assert res.manifest["generator"]["model"] == "kenburns" and res.manifest["generator"]["ai"] is False
    assert "no-AI preview" in res.manifest["generator"]["label"]
    assert "partial" not in res.manifest
    # the same run while still going (no metrics.json yet): the export says it is partial
    run = studio.open_run(past_run)
    run.data["status"] = "running"
    (run.dir / "metrics.json").rename(run.dir / "metrics.json.bak")
    try:
        res = exports.export_run(run, tmp_path / "partial", formats=["mp4", "metrics-json"])
    finally:
        (run.dir / "metrics.json.bak").rename(run.dir / "metrics.json")
    assert res.manifest["partial"] is True and "metrics.json is not written yet" in res.manifest["note"]


# ------------------------------------------------------------------------------ weights download

def test_a_download_makes_the_model_available_without_a_restart(tmp_path, monkeypatch):
    """Models tab → Download: the handler goes through Studio.download_weights, and the models
    table, the generator pickers (Create, Study, Tour) and the model note say "available" at once."""
    from core import weights
    from ui.app import build_ui

    studio = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=REPO / "models.json",
                                   min_free_bytes=0, device="cpu"))
    demo, _ = build_ui(studio)
    fetched = []

    def fake_fetch(registry, name, progress=None, **kw):  # what a finished download leaves behind
        for f in registry.get(name).files:
            if not f.optional:
                target = f.resolve(registry.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"weights")
        fetched.append(name)
        return [f"{name}: verified"]

    monkeypatch.setattr(weights, "fetch", fake_fetch)
    note_before = handler(demo, "model_changed").fn("cami2v-256", None, [])[0]
    assert "unavailable here" in note_before
    out = handler(demo, "download").fn("cami2v-256", progress=lambda *a, **k: None)
    assert fetched == ["cami2v-256"]
    status, table, picker = out[0], out[1], out[4]
    assert "badge-ok" in status and "cami2v-256: verified" in status
    row = next(r for r in table if r[0] == "cami2v-256")
    assert row[MODEL_HEADERS.index("available")] == "yes"
    assert ("CamI2V 256x256", "cami2v-256") in picker["choices"]  # no "(unavailable: ...)" any more
    # the Study and Tour tabs' generator pickers follow too
    fn = handler(demo, "download")
    ids = [getattr(c, "elem_id", None) for c in fn.outputs]
    for tab_picker in ("study-model", "tour-model"):
        assert ("CamI2V 256x256", "cami2v-256") in out[ids.index(tab_picker)]["choices"]
    note_after = handler(demo, "model_changed").fn("cami2v-256", None, [])[0]
    assert note_after.startswith("**CamI2V 256x256** · 256x256")


def test_a_download_keeps_the_commercial_switch(tmp_path, monkeypatch):
    """With "Commercial use only" on, a download refreshes Create's pickers without the models the
    switch hides; turning the switch off afterwards offers the downloaded model as available."""
    from core import weights
    from ui.app import build_ui

    studio = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=REPO / "models.json",
                                   min_free_bytes=0, device="cpu"))
    demo, _ = build_ui(studio)

    def fake_fetch(registry, name, progress=None, **kw):
        for f in registry.get(name).files:
            if not f.optional:
                target = f.resolve(registry.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"weights")
        return [f"{name}: verified"]

    monkeypatch.setattr(weights, "fetch", fake_fetch)
    fn = handler(demo, "download")
    ids = [getattr(c, "elem_id", None) for c in fn.outputs]
    out = fn.fn("cami2v-256", True, progress=lambda *a, **k: None)
    names = [n for _, n in out[ids.index("model")]["choices"]]
    assert "kenburns" in names and "cami2v-256" not in names  # CamI2V states no commercial-use licence
    off = handler(demo, "commercial_changed").fn(False, "kenburns", "nlmeans", "lanczos", "dis-interp")
    assert ("CamI2V 256x256", "cami2v-256") in off[0]["choices"]  # available now, no "(unavailable: ...)"
    on = handler(demo, "commercial_changed").fn(True, "cami2v-256", "nlmeans", "lanczos", "dis-interp")
    assert "cami2v-256" not in [n for _, n in on[0]["choices"]] and "CamI2V 256x256" in on[-1]
