"""`python -m core generate`: the files it writes, and metrics that agree with an independent
computation from the PNG frames it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_generate_writes_every_chain_and_metrics_match_frames(tmp_path):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    imgs = tmp_path / "photos"
    imgs.mkdir()
    for name in ("kitchen", "bedroom"):
        Image.open(REPO / "assets" / "examples" / f"{name}.jpg").resize((240, 150)).save(imgs / f"{name}.png")
    (imgs / "notes.txt").write_text("not an image")  # ignored: not an image extension
    out = tmp_path / "out"
    r = run_cli("generate", "--image", str(imgs), "--model", "kenburns", "--path", "push-in,pan-left",
                "--chains", "none,denoise,upscale", "--out", str(out), "--frames",
                "--param", "width=96", "--param", "height=64")
    assert r.returncode == 0, r.stderr
    for name in ("kitchen", "bedroom"):
        for path in ("push-in", "pan-left"):
            d = out / name / path
            for chain in ("none", "denoise", "upscale"):
                assert (d / f"{chain}.mp4").stat().st_size > 0
                assert len(list((d / "frames" / chain).glob("*.png"))) == 16
            assert (d / "camera.txt").read_text().count("\n") >= 16
            assert json.loads((d / "run.json").read_text())["status"] == "complete"
    d = out / "kitchen" / "pan-left"
    metrics = json.loads((d / "metrics.json").read_text())
    for chain in ("none", "upscale"):
        frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((d / "frames" / chain).glob("*.png"))]
        psnr = [peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(frames, frames[1:])]
        ssim = [structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=255, channel_axis=-1) for a, b in zip(frames, frames[1:])]
        got = metrics["chains"][chain]["native"]
        np.testing.assert_allclose(got["tpsnr"]["per_pair"], psnr, atol=1e-4)
        np.testing.assert_allclose(got["tssim"]["per_pair"], ssim, atol=1e-4)
        assert got["tpsnr"]["mean"] == pytest.approx(np.mean(psnr), abs=1e-4)
    assert metrics["chains"]["upscale"]["size"] == [384, 256]


def test_cli_errors_are_one_line(tmp_path):
    r = run_cli("generate", "--image", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.strip().startswith("error: No such image")
    assert "Traceback" not in r.stderr
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    r = run_cli("generate", "--image", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "bad.jpg" in r.stderr and "Traceback" not in r.stderr
    img = tmp_path / "ok.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(img)
    r = run_cli("generate", "--image", str(img), "--path", "spin-around", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "Unknown camera preset" in r.stderr and "Traceback" not in r.stderr
