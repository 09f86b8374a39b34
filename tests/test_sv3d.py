"""SV3D-U / SV3D-P generators end to end on tiny configs (CPU), the orbit mapping, strict
loading of a released-layout file, and the service wiring."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny models: per-op overhead dominates
pytest.importorskip("diffusers")

from core.camera import preset_path  # noqa: E402
from core.errors import CheckpointError, InputError, WeightsMissing  # noqa: E402
from core.generators.base import GenerateRequest, Generator  # noqa: E402
from core.generators.sv3d import SV3DGenerator, SV3DModel, frame_object, load_model  # noqa: E402
from core.models.sv3d.loader import released_state_dict, rule_model  # noqa: E402
from core.orbit import (Orbit, default_azimuths_deg, model_angles, orbit_from_path, parse_degrees,  # noqa: E402
                        to_model_order, to_studio_order)
from core.progress import Progress  # noqa: E402
from core.registry import Registry  # noqa: E402

SIZE = 64  # 8x8 latents
FAST = {"size": SIZE, "steps": 2, "decode_chunk_size": 11}


@pytest.fixture(scope="module")
def tiny_p():
    return SV3DModel(rule_model("tiny-p"))


@pytest.fixture(scope="module")
def tiny_u():
    return SV3DModel(rule_model("tiny-u"))


def photo(h: int = 120, w: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 200, np.uint8)
    img[30:90, 70:130] = rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)  # the "object"
    return img


def request(params=None, seed=0, camera=None, image=None):
    cam = camera if camera is not None else preset_path("orbit-right", 21, amount=1.0)
    return GenerateRequest(image=photo() if image is None else image, camera=cam, seed=seed,
                           params={**FAST, **(params or {})})


# -- orbit ------------------------------------------------------------------------------------


def test_orders_and_tool_conversion():
    assert to_model_order([0, 1, 2]) == [1, 2, 0] and to_studio_order([1, 2, 0]) == [0, 1, 2]
    assert np.array_equal(to_studio_order(np.arange(3)), [2, 0, 1])
    az = default_azimuths_deg(21)
    assert az[-1] == 0 and az[0] == pytest.approx(360 / 21)
    a = model_angles(10.0, None, 21)
    assert a.polars_rad == (pytest.approx(np.deg2rad(80.0)),) * 21 or all(
        p == pytest.approx(np.deg2rad(80.0)) for p in a.polars_rad)
    assert a.azimuths_rad[-1] == 0.0
    with pytest.raises(InputError, match="list of 21"):
        model_angles([1.0, 2.0], None, 21)
    assert parse_degrees("[10,15,20]", "E") == [10.0, 15.0, 20.0]
    assert parse_degrees("10", "E") == 10.0 and parse_degrees("", "E") is None
    for bad in ("[1,'a']", "ten", "[]", "true", "[1e999]"):
        with pytest.raises(InputError):
            parse_degrees(bad, "Elevations")


def test_orbit_presets_map_directly():
    o = orbit_from_path(preset_path("orbit-right", 21, amount=1.0), base_elevation_deg=10.0)
    assert o.order == "studio" and not o.warnings
    assert np.allclose(o.azimuths_deg, np.linspace(0, 90, 21), atol=1e-9)  # a 90 degree arc to the right
    assert np.allclose(o.elevations_deg, 10.0)
    left = orbit_from_path(preset_path("orbit-left", 21, amount=1.0))
    assert np.allclose(left.azimuths_deg, -np.linspace(0, 90, 21), atol=1e-9)
    up = orbit_from_path(preset_path("arc-up", 21, amount=1.0), base_elevation_deg=0.0)
    assert np.allclose(up.elevations_deg, np.linspace(0, 45, 21), atol=1e-9) and np.allclose(up.azimuths_deg, 0)
    # A free path is projected onto the sphere, with a warning; a still camera falls back to a full turn.
    push = orbit_from_path(preset_path("push-in", 21, amount=1.0))
    assert push.warnings and "projected" in push.warnings[0]
    still = orbit_from_path(preset_path("pan-left", 21))
    assert still.warnings and "default full orbit" in still.warnings[0] and still.order == "model"
    # Studio order -> model order puts the photo's view (azimuth 0) last, as the tool expects.
    m = o.in_model_order()
    assert m.azimuths_deg[-1] == 0.0 and o.angles().azimuths_rad[-1] == 0.0
    assert o.angles().azimuths_rad[0] == pytest.approx(np.deg2rad(4.5))
    with pytest.raises(InputError):
        Orbit((1.0,), (1.0, 2.0))


def test_frame_object_centres_and_sizes_the_object():
    img = photo()
    out, box = frame_object(img, 64, 0.5)  # RGB: the whole photo is the "object"
    assert out.shape == (64, 64, 3) and box == [0, 0, 200, 120]
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[40:60, 20:40] = (255, 0, 0, 255)
    out, box = frame_object(rgba, 64, 0.5)
    assert box == [20, 40, 40, 60]
    red = (out[..., 0] > 200) & (out[..., 1] < 60)
    ys, xs = np.nonzero(red)
    assert 14 <= xs.min() <= 18 and 46 <= xs.max() <= 50  # 20 px object in a 40 px canvas -> half the frame
    assert (out[0, 0] == 255).all()  # white background
    out, _ = frame_object(rgba, 50, 0.0)  # no ratio: a canvas as tall as the image (the tool's choice)
    ys, xs = np.nonzero((out[..., 0] > 200) & (out[..., 1] < 60))
    assert 19 <= xs.min() <= 21 and 28 <= xs.max() <= 30


# -- generator --------------------------------------------------------------------------------


def test_contract():
    p = SV3DGenerator("sv3d-p", lambda: None)
    u = SV3DGenerator("sv3d-u", lambda: None)
    assert isinstance(p, Generator) and p.camera_control is True and u.camera_control is False
    assert (p.width, p.height, p.num_frames) == (576, 576, 21)
    names = {s.name for s in p.param_specs()}
    assert {"elevations_deg", "azimuths_deg", "remove_background", "image_frame_ratio", "steps"} <= names
    assert "azimuths_deg" not in {s.name for s in u.param_specs()}
    specs = {s.name: s for s in p.param_specs()}
    assert specs["steps"].default == 50 and specs["max_guidance"].default == 2.5 and specs["cond_aug"].default == 1e-5


def test_sv3d_p_runs_end_to_end(tiny_p):
    gen = SV3DGenerator("sv3d-p", lambda: tiny_p)
    seen = []
    res = gen.generate(request(), Progress(lambda f, m: seen.append((f, m))))
    frames = res.clip.frames
    assert frames.shape == (21, SIZE, SIZE, 3) and frames.dtype == np.uint8
    first, _ = __import__("core.generators.svd", fromlist=["cover_crop"]).cover_crop(photo(), SIZE, SIZE)
    assert np.array_equal(frames[0], first)  # the photo's own view comes first
    assert frames[1:].std() > 1.0
    assert [m for _, m in seen if m.startswith("step ")] == ["step 1/2", "step 2/2"]
    fr = [f for f, _ in seen]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    info = res.info
    assert info["camera_ignored"] is False and not info["warnings"]
    assert np.allclose(info["orbit"]["azimuths_deg"], np.linspace(0, 90, 21), atol=1e-3)
    assert res.crop_box == (40, 0, 160, 120)
    json.dumps(info)


def test_seed_determinism_and_the_path_matters(tiny_p):
    gen = SV3DGenerator("sv3d-p", lambda: tiny_p)
    a = gen.generate(request(seed=3), Progress()).clip.frames
    b = gen.generate(request(seed=3), Progress()).clip.frames
    c = gen.generate(request(seed=4), Progress()).clip.frames
    d = gen.generate(request(seed=3, camera=preset_path("orbit-left", 21, amount=1.0)), Progress()).clip.frames
    assert np.array_equal(a, b)
    assert np.abs(a[1:].astype(int) - c[1:].astype(int)).mean() > 0.5
    assert np.abs(a[1:].astype(int) - d[1:].astype(int)).mean() > 0.1  # the angles reach the UNet


def test_explicit_lists_as_the_tool_took_them(tiny_p):
    gen = SV3DGenerator("sv3d-p", lambda: tiny_p)
    el = "[" + ",".join(str(10 + i) for i in range(21)) + "]"
    res = gen.generate(request({"elevations_deg": el}), Progress())
    orbit = res.info["orbit"]
    # Studio order: the tool's last entry (the photo's view) first.
    assert orbit["elevations_deg"][0] == 30.0 and orbit["elevations_deg"][1] == 10.0
    assert orbit["azimuths_deg"][0] == 0.0 and orbit["azimuths_deg"][1] == pytest.approx(360 / 21, abs=1e-3)
    assert "camera path was not used" in res.info["warnings"][0]
    with pytest.raises(InputError, match="list of 21"):
        gen.generate(request({"elevations_deg": "[10,15,20]"}), Progress())
    with pytest.raises(InputError, match="Azimuths"):
        gen.generate(request({"azimuths_deg": "90"}), Progress())


def test_sv3d_u_ignores_the_path(tiny_u):
    gen = SV3DGenerator("sv3d-u", lambda: tiny_u)
    a = gen.generate(request(seed=1), Progress())
    b = gen.generate(request(seed=1, camera=preset_path("orbit-left", 21, amount=1.0)), Progress())
    assert np.array_equal(a.clip.frames, b.clip.frames)
    assert a.info["camera_ignored"] is True and "camera path was not used" in a.info["warnings"][0]
    assert a.clip.frames.shape == (21, SIZE, SIZE, 3)


def test_bad_input_is_one_line(tiny_p, tiny_u, monkeypatch):
    gen = SV3DGenerator("sv3d-p", lambda: tiny_p)
    with pytest.raises(InputError, match="multiple of 64"):
        gen.generate(request({"size": 100}), Progress())
    with pytest.raises(InputError, match="21-frame orbit"):
        gen.generate(GenerateRequest(photo(), preset_path("orbit-right", 40), params=FAST, num_frames=40), Progress())
    monkeypatch.setitem(sys.modules, "rembg", None)  # not installed
    with pytest.raises(InputError, match="rembg"):
        gen.generate(request({"remove_background": True}), Progress())
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="tiny-u"):
        SV3DGenerator("sv3d-p", lambda: tiny_u).generate(request(), Progress())


# -- loading ----------------------------------------------------------------------------------


def registry_for(tmp_path, path, name="sv3d-p", preset="tiny-p"):
    reg = tmp_path / "models.json"
    reg.write_text(json.dumps({"models": {name: {
        "kind": "generator", "variant": "sv3d", "label": "SV3D-P (tiny test)", "requires": ["diffusers"],
        "options": {"variant": name, "preset": preset}, "defaults": {"size": SIZE, "steps": 2},
        "files": [{"role": "model", "path": str(path), "repo": "stabilityai/sv3d", "filename": "sv3d_p.safetensors"}]}}}))
    return Registry.load(reg, root=tmp_path)


def test_strict_load_of_a_released_layout_file(tmp_path, tiny_p):
    from safetensors.torch import save_file

    state = released_state_dict(tiny_p.model)
    assert any(k.startswith("model.diffusion_model.input_blocks.1.1.time_stack.0.") for k in state)
    assert any(k.startswith("conditioner.embedders.1.encoder.decoder.") for k in state)
    path = tmp_path / "sv3d_p.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    reg = registry_for(tmp_path, path)
    model = load_model(reg, "sv3d-p", device="cpu", dtype="fp32")
    assert isinstance(model, SV3DModel) and model.nbytes == tiny_p.nbytes
    gen = SV3DGenerator.from_entry(reg.get("sv3d-p"), lambda: model)
    assert gen.width == SIZE
    a = gen.generate(request(seed=2), Progress()).clip.frames
    b = SV3DGenerator("sv3d-p", lambda: tiny_p).generate(request(seed=2), Progress()).clip.frames
    assert np.array_equal(a, b)
    # One missing key, one unknown key: each is named.
    broken = dict(state)
    broken.pop("model.diffusion_model.out.2.weight")
    save_file({k: v.contiguous() for k, v in broken.items()}, str(path))
    with pytest.raises(CheckpointError, match="missing keys: .*unet.net.conv_out.weight"):
        load_model(reg, "sv3d-p")
    broken = dict(state, **{"model.diffusion_model.extra.weight": torch.zeros(1)})
    save_file({k: v.contiguous() for k, v in broken.items()}, str(path))
    with pytest.raises(CheckpointError, match="extra.weight"):
        load_model(reg, "sv3d-p")


def test_missing_weights_say_how_to_accept_the_licence(tmp_path):
    reg = registry_for(tmp_path, tmp_path / "absent" / "sv3d_p.safetensors")
    with pytest.raises(WeightsMissing, match="(?s)core.weights fetch sv3d-p.*accept the Stability AI Community License"):
        load_model(reg, "sv3d-p")


def test_models_json_lists_both_with_licence():
    from pathlib import Path

    reg = Registry.load(Path(__file__).resolve().parents[1] / "models.json")
    for name in ("sv3d-u", "sv3d-p"):
        e = reg.get(name)
        assert e.variant == "sv3d" and "Stability AI Community License" in e.license
        assert e.file("model").repo == "stabilityai/sv3d" and "accept the licence" in e.description


def test_studio_runs_sv3d_p_and_lists_it(tmp_path, tiny_p):
    from safetensors.torch import save_file

    from core.service import JobRequest, Studio, StudioSettings

    path = tmp_path / "sv3d_p.safetensors"
    save_file({k: v.contiguous() for k, v in released_state_dict(tiny_p.model).items()}, str(path))
    registry_for(tmp_path, path)
    studio = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=tmp_path / "models.json",
                                   device="cpu", min_free_bytes=0))
    info = next(i for i in studio.model_infos("generator") if i.name == "sv3d-p")
    assert info.available and info.camera_control is True and info.num_frames == 21
    events = list(studio.run_job(JobRequest(photo(), model="sv3d-p", seed=1)))
    generated = next(e for e in events if e.kind == "generated")
    assert generated.video.is_file() and events[-1].kind == "done"
    data = json.loads((studio.open_run(events[0].run_id).dir / "run.json").read_text())
    assert data["generator_info"]["num_frames"] == 21 and data["generator_info"]["renderer"] == "sv3d"


def test_cli_takes_the_tools_degree_lists(tmp_path, tiny_p):
    import os
    import subprocess
    from pathlib import Path

    from PIL import Image
    from safetensors.torch import save_file

    repo = Path(__file__).resolve().parents[1]
    path = tmp_path / "sv3d_p.safetensors"
    save_file({k: v.contiguous() for k, v in released_state_dict(tiny_p.model).items()}, str(path))
    registry_for(tmp_path, path)
    Image.fromarray(photo()).save(tmp_path / "object.png")
    elevations = "[" + ",".join(str(5 + i) for i in range(21)) + "]"
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "core", "generate", "--image", str(tmp_path / "object.png"),
                        "--model", "sv3d-p", "--models", str(tmp_path / "models.json"), "--device", "cpu",
                        "--elevations-deg", elevations, "--out", str(tmp_path / "out"), "--frames"],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    run = next((tmp_path / "out").rglob("run.json"))
    info = json.loads(run.read_text())["generator_info"]
    assert info["orbit"]["elevations_deg"][:2] == [25.0, 5.0]  # the tool's last value is the photo's view
    assert len(list((run.parent / "frames" / "none").glob("*.png"))) == 21


def test_models_cli_inspects_and_verifies(tmp_path):
    """`python -m core.models inspect/verify sv3d-*` (exercised on the tiny presets: same code)."""
    from safetensors.torch import save_file

    from core.models import family_of
    from core.models.sv3d.loader import expected_upstream_shapes

    fam = family_of("sv3d-p")
    assert family_of("sv3d-u") is fam and set(fam.INSPECTABLE) == {"sv3d-u", "sv3d-p"}
    entries = fam.inspect_entries("tiny-p")
    assert {k: s for k, s, _ in entries} == expected_upstream_shapes("tiny-p")
    full = expected_upstream_shapes("tiny-u")
    path = tmp_path / "x.safetensors"
    save_file({k: torch.zeros(s) for k, s in full.items()}, str(path))
    assert fam.verify_file("tiny-u", path).ok
    v = fam.verify_file("tiny-p", path)
    assert not v.ok and v.identified == "tiny-u" and "label_emb.0.0.weight" in v.message
    save_file({k: torch.zeros(s) for k, s in full.items() if "label_emb" not in k}, str(path))
    v = fam.verify_file("tiny-u", path)
    assert not v.ok and v.kind == "mismatch" and "missing keys" in v.message


def test_models_tab_lists_sv3d_with_its_availability(tmp_path):
    from pathlib import Path

    from core.service import Studio, StudioSettings

    studio = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", device="cpu", min_free_bytes=0,
                                   models=Path(__file__).resolve().parents[1] / "models.json"))
    infos = {i.name: i for i in studio.model_infos("generator")}
    for name, follows in (("sv3d-u", False), ("sv3d-p", True)):
        info = infos[name]
        assert info.camera_control is follows and info.num_frames == 21 and (info.width, info.height) == (576, 576)
        assert not info.available and info.reason  # no weights (and no GPU) here: it says why
        assert "Stability AI Community License" in info.license


def test_background_removal_uses_rembg_when_installed(tiny_p, monkeypatch):
    """With rembg present its cut-out is framed on white: here a stand-in keeps only the object."""
    import types

    calls = []

    def remove(pil, alpha_matting=False):
        calls.append((pil.size, pil.mode, alpha_matting))
        arr = np.asarray(pil).copy()
        keep = np.zeros(arr.shape[:2], bool)
        keep[30:90, 70:130] = True  # the object of `photo()`
        arr[..., 3] = np.where(keep, 255, 0)
        from PIL import Image

        return Image.fromarray(arr)

    monkeypatch.setitem(sys.modules, "rembg", types.SimpleNamespace(remove=remove))
    gen = SV3DGenerator("sv3d-p", lambda: tiny_p)
    res = gen.generate(request({"remove_background": True, "image_frame_ratio": 0.5}), Progress())
    assert calls == [((200, 120), "RGBA", True)]
    assert res.crop_box == (70, 30, 130, 90)  # the object, in the photo's pixels
    first = res.clip.frames[0]
    assert (first[:8, :8] == 255).all() and (first[-8:, -8:] == 255).all()  # white around the object
    assert first[24:40, 24:40].std() > 20  # the object (random pixels) in the middle half


def test_camera_note_says_what_each_model_does_with_the_path():
    from types import SimpleNamespace as NS

    from ui.camera_notes import camera_note

    assert camera_note(None) == ""
    assert camera_note(NS(variant="cami2v", camera_control=True)) == ""
    assert camera_note(NS(variant="svd", camera_control=False)) == \
        "This model has no camera control: the camera path is ignored."
    assert "orbit" in camera_note(NS(variant="sv3d", camera_control=True)) and \
        "projected onto the orbit sphere" in camera_note(NS(variant="sv3d", camera_control=True))
    assert "camera path is ignored" in camera_note(NS(variant="sv3d", camera_control=False))
