"""Exports of a run (every format, one chain or all, the download zip) and the two watermarks:
the visible text changes only its corner; the invisible mark is found after H.264 encoding and
not found in unmarked clips or with another key."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import exports
from core.camera import CameraPath
from core.clip import Clip
from core.errors import InputError
from core.service import CameraSpec, JobRequest, Studio, StudioSettings
from core.video import read_video, write_mp4

REPO = Path(__file__).resolve().parents[1]
W, H, N = 160, 96, 12


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return Studio(StudioSettings(outputs=tmp_path_factory.mktemp("outputs"), device="cpu"))


@pytest.fixture(scope="module")
def run(studio):
    """A finished run: kenburns 160x96, 12 frames, chains none and upscale (Lanczos x2), with the
    PNG frames kept (so watermarked exports start from lossless frames)."""
    photo = np.asarray(Image.open(REPO / "assets" / "examples" / "living_room.jpg").resize((240, 150)))
    req = JobRequest(image=photo, camera=CameraSpec(preset="push-in"), model="kenburns", seed=1,
                     params={"width": W, "height": H, "num_frames": N}, chains=("none", "upscale"),
                     stage_params={"lanczos": {"scale": 2}}, save_frames=True)
    run_id = [ev.run_id for ev in studio.run_job(req)][-1]
    return studio.open_run(run_id)


# Exported chain files name the chain and the model that made them (the preview says it is no AI).
C0 = "chain-00-none__kenburns-no-AI-preview"
C1 = "chain-01-upscale__kenburns-no-AI-preview"


def png_frames(zip_path: Path) -> list[np.ndarray]:
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        return [np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("RGB")) for n in names]


def test_every_format_of_every_chain(run, tmp_path):
    res = exports.export_run(run, tmp_path / "all")
    names = sorted(p.name for p in res.files)
    assert names == sorted([f"{C0}.mp4", f"{C1}.mp4", f"{C0}.gif", f"{C1}.gif", f"{C0}-frames.zip",
                            f"{C1}-frames.zip", "camera.txt", "camera.json", "run.json", "metrics.json",
                            "export.json"])
    d = tmp_path / "all"
    # without a watermark the mp4 is the run's file, byte for byte
    assert (d / f"{C0}.mp4").read_bytes() == (run.dir / run.data["chains"]["none"]["files"]["mp4"]).read_bytes()
    gif = read_video(d / f"{C1}.gif")
    assert gif.num_frames == N and (gif.width, gif.height) == (2 * W, 2 * H)
    frames = png_frames(d / f"{C0}-frames.zip")
    original = read_video(run.dir / run.data["chains"]["none"]["files"]["png"]).frames
    assert len(frames) == N and np.array_equal(np.stack(frames), original)  # lossless
    with zipfile.ZipFile(d / f"{C0}-frames.zip") as zf:
        assert json.loads(zf.read("frames.json")) == {"fps": 10.0, "num_frames": N}
    txt_path = CameraPath.from_realestate10k((d / "camera.txt").read_text())
    json_path = CameraPath.from_dict(json.loads((d / "camera.json").read_text()))
    # the text has one line per video frame (the generator resampled the 16-frame path to 12)
    assert txt_path.num_frames == N and txt_path.allclose(json_path.resampled(N))
    assert json.loads((d / "run.json").read_text())["id"] == run.id
    assert set(json.loads((d / "metrics.json").read_text())["chains"]) == {"none", "upscale"}
    manifest = json.loads((d / "export.json").read_text())
    assert manifest["chains"] == {"none": {"index": 0, "files": [f"{C0}.mp4", f"{C0}.gif", f"{C0}-frames.zip"]},
                                  "upscale": {"index": 1, "files": [f"{C1}.mp4", f"{C1}.gif",
                                                                    f"{C1}-frames.zip"]}}
    assert manifest["watermark"] is None and manifest["missing"] == []


def test_one_chain_and_bad_choices(run, tmp_path):
    res = exports.export_run(run, tmp_path / "one", chains="upscale", formats=["mp4", "camera-txt"])
    assert sorted(p.name for p in res.files) == ["camera.txt", f"{C1}.mp4", "export.json"]
    with pytest.raises(InputError, match="no chain 'denoise'"):
        exports.export_run(run, tmp_path / "x", chains="denoise")
    with pytest.raises(InputError, match="Unknown export format 'webm'"):
        exports.export_run(run, tmp_path / "x", formats=["webm"])
    with pytest.raises(InputError, match="at most 80"):
        exports.Watermark(text="x" * 81)
    assert exports.Watermark(text="  a\tb\x00c\n ").text == "a b c"


def test_zip_run_contents_and_cache(run):
    z = exports.zip_run(run, chains=None, formats=["mp4", "frames", "run-json"])
    assert z.parent == run.root / "exports" / run.id and z.name.startswith("export-")
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == [f"{C0}-frames.zip", f"{C0}.mp4", f"{C1}-frames.zip",
                                         f"{C1}.mp4", "export.json", "run.json"]
        assert zf.getinfo(f"{C0}.mp4").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("run.json").compress_type == zipfile.ZIP_DEFLATED
    mtime = z.stat().st_mtime_ns
    assert exports.zip_run(run, formats=["mp4", "frames", "run-json"]) == z and z.stat().st_mtime_ns == mtime
    other = exports.zip_run(run, "none", ["mp4"])
    assert other != z
    with zipfile.ZipFile(other) as zf:
        assert sorted(zf.namelist()) == [f"{C0}.mp4", "export.json"]
    assert not [p for p in z.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_visible_watermark_changes_only_the_corner(run, tmp_path):
    wm = exports.Watermark(text="© Example Realty", opacity=0.7)
    exports.export_run(run, tmp_path / "wm", chains="none", formats=["frames"], watermark=wm)
    marked = np.stack(png_frames(tmp_path / "wm" / f"{C0}-frames.zip")).astype(int)
    original = read_video(run.dir / run.data["chains"]["none"]["files"]["png"]).frames.astype(int)
    changed = np.abs(marked - original).max(axis=(0, 3)) > 0  # (H, W) pixels changed in any frame
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 100
    assert xs.min() > W // 3 and ys.min() > H * 3 // 4  # bottom-right corner only
    assert np.array_equal(marked[:, : H // 2], original[:, : H // 2])
    # the text is scaled to the frame: twice the size, about twice as tall
    big = exports.draw_text(np.zeros((1, 2 * H, 2 * W, 3), np.uint8), "© Example Realty")
    small = exports.draw_text(np.zeros((1, H, W, 3), np.uint8), "© Example Realty")
    height = lambda a: np.ptp(np.nonzero(a[0].max(axis=2))[0]) + 1  # noqa: E731
    assert 1.6 < height(big) / height(small) < 2.4
    # long text shrinks to fit the width
    wide = exports.draw_text(np.zeros((1, 48, 64, 3), np.uint8), "A long agency name that cannot fit")
    assert wide[0, :, 0].max() == 0


def test_invisible_watermark_survives_h264_and_has_no_false_positives(run, tmp_path):
    key = b"k" * 32
    wm = exports.Watermark(invisible=True)
    res = exports.export_run(run, tmp_path / "inv", chains="none", formats=["mp4"], watermark=wm, key=key)
    assert res.manifest["watermark"]["invisible"] is True and res.manifest["watermark"]["payload"] == run.id
    marked = read_video(tmp_path / "inv" / f"{C0}.mp4")  # decoded H.264 at the default CRF
    original = read_video(run.dir / run.data["chains"]["none"]["files"]["png"]).frames
    psnr = 10 * np.log10(255**2 / np.mean((marked.frames.astype(float) - original) ** 2))
    assert psnr > 38  # marking plus encoding costs little
    found = exports.detect(marked, key)
    assert found.detected and found.confidence > 0.99 and found.z > exports.Z_THRESHOLD + 3
    unmarked = exports.detect_file(run.dir / run.data["chains"]["none"]["files"]["mp4"], key)
    assert not unmarked.detected and abs(unmarked.z) < 3 and unmarked.confidence < 1e-3
    assert not exports.detect(marked, b"another key").detected
    # z is a standard normal score on clips this key never marked: check it over many keys
    zs = [exports.detect(marked, f"key-{i}").z for i in range(40)]
    assert max(abs(z) for z in zs) < 4.5 and abs(np.mean(zs)) < 0.6


def test_payload_decodes_on_a_full_size_clip(studio, tmp_path):
    from core.generators.base import GenerateRequest
    from core.camera import preset_path

    photo = np.asarray(Image.open(REPO / "assets" / "examples" / "kitchen.jpg"))
    gen = studio.generator("kenburns")
    clip = gen.generate(GenerateRequest(photo, preset_path("slide-left", num_frames=16), "", "", 0,
                                        {**{s.name: s.default for s in gen.param_specs()}}), None).clip
    assert (clip.width, clip.height, clip.num_frames) == (512, 320, 16)
    write_mp4(Clip(exports.embed(clip, "run-123", "secret"), clip.fps), tmp_path / "m.mp4")
    back = read_video(tmp_path / "m.mp4")
    d = exports.detect(back, "secret", payload="run-123")
    assert d.detected and d.payload_match and d.bit_errors == 0
    assert d.bits == tuple(exports.payload_bits("run-123"))
    wrong = exports.detect(back, "secret", payload="run-124")
    assert wrong.detected and not wrong.payload_match and wrong.bit_errors > 16


def test_invisible_mark_is_faint_and_keyed(run):
    frames = read_video(run.dir / run.data["chains"]["none"]["files"]["png"]).frames
    marked = exports.embed(frames, None, "a")
    mse = np.mean((marked.astype(float) - frames) ** 2)
    assert 0 < mse and 10 * np.log10(255**2 / mse) > 42
    assert not np.array_equal(marked, exports.embed(frames, None, "b"))
    assert np.array_equal(marked, exports.embed(frames, None, "a"))  # deterministic per key
    # odd sizes: the partial last block row/column is left alone, detection still works
    odd = exports.embed(frames[:, :93, :157], None, "a")
    assert np.array_equal(odd[:, 88:], frames[:, 88:93, :157]) and exports.detect(odd, "a").detected
    with pytest.raises(InputError):
        exports.embed(frames, None, "")


def test_installation_key_is_private_and_stable(tmp_path):
    k1 = exports.installation_key(tmp_path)
    assert len(k1) == 32 and exports.installation_key(tmp_path) == k1
    mode = os.stat(exports.key_path(tmp_path)).st_mode
    assert not mode & (stat.S_IRGRP | stat.S_IROTH)
    assert not (tmp_path / exports.KEY_FILE).exists()  # nothing secret inside the served folder


def test_export_panel_downloads_a_watermarked_zip(studio, run, tmp_path, monkeypatch):
    import gradio as gr

    from ui.study_tab import build_export_panel

    with gr.Blocks() as demo:
        state = gr.State({"run": None, "chains": {}})
        comps = build_export_panel(studio, state)
    fns = {f.api_name: f for f in demo.fns.values()}
    update = fns["chains_for"].fn({"run": run.id, "chains": {}})
    assert update["choices"] == [("All chains", "all"), ("none", "none"), ("upscale", "upscale")]
    path = Path(fns["export"].fn({"run": run.id}, "none", ["mp4"], "Demo", True))
    # the check takes uploads only (a client cannot make the server read its own files)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    uploads = tmp_path / "gradio" / "u1"
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("export.json"))
        zf.extract(f"{C0}.mp4", uploads)
    assert manifest["watermark"]["visible_text"] == "Demo" and manifest["watermark"]["invisible"]
    verdict = fns["do_check"].fn(str(uploads / f"{C0}.mp4"))
    assert verdict.startswith("**Watermark found**")
    (uploads / "plain.mp4").write_bytes((run.dir / run.data["chains"]["none"]["files"]["mp4"]).read_bytes())
    assert "no watermark" in fns["do_check"].fn(str(uploads / "plain.mp4"))
    with pytest.raises(gr.Error, match="uploaded"):
        fns["do_check"].fn(str(run.dir / run.data["chains"]["none"]["files"]["mp4"]))
    assert comps["button"] is not None
