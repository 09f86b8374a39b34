"""Long shots with Stable Video Diffusion: the same segment chaining without a camera, on the tiny
random diffusers components of tests/test_svd.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from core.camera import preset_path  # noqa: E402
from core.errors import Cancelled  # noqa: E402
from core.generators import svd as svd_mod  # noqa: E402
from core.generators.base import GenerateRequest, SegmentOptions  # noqa: E402
from core.generators.segments import finished_segments  # noqa: E402
from core.generators.svd import SVDGenerator, SVDModel  # noqa: E402
from core.progress import Progress  # noqa: E402
from tests.test_svd import FAST, photo, tiny_svd_pipeline  # noqa: E402

PARAMS = {**FAST, "steps": 2}  # 128x128, 3 frames per segment


@pytest.fixture(scope="module")
def gen():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny components: a second thread only spins on a busy machine
    yield SVDGenerator("svd", lambda m=SVDModel(tiny_svd_pipeline(), "fp32"): m)
    torch.set_num_threads(n)


def long_request(seed=2, **kw):
    return GenerateRequest(photo(), preset_path("push-in", 7), seed=seed, params=PARAMS, num_frames=7, **kw)


def test_svd_chains_segments_on_the_previous_last_frame(gen, monkeypatch, tmp_path):
    seen = []
    orig = svd_mod.cover_crop

    def spy(image, width, height):
        seen.append(np.array(image))
        return orig(image, width, height)

    monkeypatch.setattr(svd_mod, "cover_crop", spy)
    msgs = []
    res = gen.generate(long_request(run_dir=tmp_path), lambda f, m: msgs.append(m))
    assert res.clip.frames.shape == (7, 128, 128, 3) and res.clip.fps == 7.0
    assert res.info["segments"]["starts"] == [0, 2, 4] and res.info["camera_ignored"] is True
    segs = [np.load(tmp_path / "segments" / f"segment-{k:03d}.npz")["frames"] for k in range(3)]
    np.testing.assert_array_equal(seen[1], segs[0][2])  # conditioned on the last frame
    np.testing.assert_array_equal(seen[2], segs[1][2])
    np.testing.assert_array_equal(res.clip.frames[3], segs[1][1])
    assert any(m == "segment 3 of 3, step 2/2" for m in msgs)
    assert len(res.info["seams"]["joins"]) == 2
    np.testing.assert_array_equal(gen.generate(long_request(), None).clip.frames, res.clip.frames)


def test_svd_cancelled_long_shot_resumes_to_the_same_frames(gen, tmp_path):
    full = gen.generate(long_request(), None).clip.frames

    def stop(f, m):
        if m.startswith("segment 2 of 3, step 1/2"):
            prog.cancel()

    prog = Progress(stop)
    with pytest.raises(Cancelled):
        gen.generate(long_request(run_dir=tmp_path), prog)
    assert finished_segments(tmp_path) == 1
    res = gen.generate(long_request(run_dir=tmp_path), None)
    assert res.info["segments"]["resumed"] == 1
    np.testing.assert_array_equal(res.clip.frames, full)


def test_svd_overlap_two_blends_and_keeps_n(gen):
    res = gen.generate(GenerateRequest(photo(), preset_path("push-in", 5), seed=1,
                                       params={**PARAMS, "num_frames": 4}, num_frames=5,
                                       segments=SegmentOptions(overlap=2)), None)
    assert res.clip.num_frames == 5 and res.info["segments"]["starts"] == [0, 2]
