"""`python -m core measure`: every measure of videos made anywhere, same code path as the dashboard."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core import metrics as M
from core.__main__ import main
from core.clip import Clip
from core.video import read_video, write_mp4


def _clip(shift: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(rng.normal(128, 50, (64, 140, 3)).astype(np.float32), (0, 0), 2)
    frames = np.stack([scene[:, shift * i : shift * i + 96] for i in range(5)])
    return np.clip(frames + rng.normal(0, noise, frames.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("measure")
    a, b = d / "steady.mp4", d / "noisy.mp4"
    write_mp4(Clip(_clip(3, 0, 1), 8.0), a)
    write_mp4(Clip(_clip(3, 12, 1), 8.0), b)
    photo = d / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(_clip(3, 0, 1)[0], cv2.COLOR_RGB2BGR))
    return a, b, photo


def test_json_keyed_by_file_name_equals_measure(videos, capsys):
    a, b, photo = videos
    assert main(["measure", str(a), str(b), "--reference", str(photo), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["steady.mp4", "noisy.mp4"]
    ref = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    direct = M.measure(read_video(a), reference_image=ref, common_size=(96, 64), study=True)
    assert out["steady.mp4"]["native"]["warp_psnr"]["per_pair"] == pytest.approx(direct["native"]["warp_psnr"]["per_pair"])
    assert out["steady.mp4"]["fidelity"]["native"]["psnr"] == pytest.approx(direct["fidelity"]["native"]["psnr"])
    # the added noise shows where it should
    assert out["noisy.mp4"]["native"]["noise_sigma"]["mean"] > 3 * out["steady.mp4"]["native"]["noise_sigma"]["mean"]
    assert out["noisy.mp4"]["native"]["warp_psnr"]["mean"] < out["steady.mp4"]["native"]["warp_psnr"]["mean"]


def test_text_summary_and_errors(videos, capsys):
    a, _, _ = videos
    assert main(["measure", str(a), "--common-size", "48x32"]) == 0
    text = capsys.readouterr().out
    assert "steady.mp4: 5 frames 96x64" in text and "at 48x32:" in text and "warped PSNR dB" in text
    assert main(["measure", str(a.parent / "missing.mp4")]) != 0
    assert main(["measure", str(a), "--common-size", "big"]) != 0
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and "Traceback" not in err
