"""RIFE v4.x: our IFNet against outputs recorded from the upstream code (tests/fixtures/rife/README.md),
strict loading in the released layout, and the stage in chains and the service."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from core.clip import Clip  # noqa: E402
from core.errors import CheckpointError, ConfigError, Unavailable  # noqa: E402
from core.models.rife import PRESETS, IFNet, build_model, convert_state_dict, get_preset, load_rife  # noqa: E402
from core.models.rife import keymap, rule_state_dict  # noqa: E402
from core.models.weight_rule import rule_tensor  # noqa: E402
from core.postprocess import chains as chainlib  # noqa: E402
from core.postprocess.interpolate import output_count  # noqa: E402
from core.postprocess.rife import RIFEStage  # noqa: E402
from core.service import CameraSpec, JobRequest, Studio, StudioSettings  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "rife"
REL_TOL = 1e-4  # max |ours - upstream| / max |upstream|, fp32 CPU
# fixture tag -> released version it was recorded for
VERSIONS = {"heavy": "4.26.heavy", "v425": "4.25"}


@pytest.fixture(scope="module")
def golden() -> dict:
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "rife_ifnet.safetensors"))


@pytest.fixture(scope="module")
def nets() -> dict:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return {tag: build_model(rule_state_dict(get_preset(v)), get_preset(v)) for tag, v in VERSIONS.items()}


def rel_err(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("tag", sorted(VERSIONS))
@pytest.mark.parametrize("t", [0.5, 0.3])
def test_ifnet_matches_upstream(golden, nets, tag, t):
    with torch.no_grad():
        out = nets[tag].forward_full(golden["img0"], golden["img1"], t)
    assert rel_err(out.merged, golden[f"{tag}_t{t}_merged"]) <= REL_TOL
    if f"{tag}_t{t}_flow" in golden:
        assert rel_err(out.flow, golden[f"{tag}_t{t}_flow"]) <= REL_TOL
        assert rel_err(out.mask_logit, golden[f"{tag}_t{t}_mask"]) <= REL_TOL


@pytest.mark.parametrize("tag", sorted(VERSIONS))
def test_padded_odd_size_matches_upstream(golden, nets, tag):
    a, b = golden["odd_img0"], golden["odd_img1"]  # 50 x 70, padded to 64 x 128 as upstream does
    pad = (0, 128 - 70, 0, 64 - 50)
    with torch.no_grad():
        y = nets[tag](F.pad(a, pad), F.pad(b, pad), 0.5)[:, :, :50, :70]
    assert rel_err(y, golden[f"{tag}_odd_merged"]) <= REL_TOL


def test_batched_times_equal_single_calls(golden, nets):
    net = nets["v425"]
    a, b = golden["img0"], golden["img1"]
    with torch.no_grad():
        batch = net(a.expand(2, -1, -1, -1), b.expand(2, -1, -1, -1), torch.tensor([0.5, 0.3]).view(2, 1, 1, 1))
        one = net(a, b, 0.3)
    torch.testing.assert_close(batch[1:], one, rtol=0, atol=1e-5)


def test_weight_rule_spot_values_match_the_recording():
    meta = json.loads((FIXTURES / "meta.json").read_text())
    for tag, version in VERSIONS.items():
        key = "hzwer" if tag == "heavy" else "v425"
        state = rule_state_dict(get_preset(version))
        assert len(state) == meta[f"{key}_keys"] == 158
        for k, v in meta[f"{key}_spot_values"].items():
            assert float(state["module." + k].flatten()[0]) == pytest.approx(v, rel=1e-6)


def test_released_layout_round_trips_strictly(tmp_path):
    cfg = get_preset("4.25")
    state = rule_state_dict(cfg)
    assert all(k.startswith("module.") for k in state)
    path = tmp_path / "flownet.pkl"
    torch.save(state, path)
    net = load_rife(path, "4.25")
    ours = net.state_dict()
    back = {"module." + keymap.key_map(cfg)[k]: v for k, v in ours.items()}
    assert back.keys() == state.keys()
    for k in state:
        torch.testing.assert_close(back[k], state[k], rtol=0, atol=0)
    # without the wrapper prefix too, and training-only modules are skipped by name
    bare = {k[len("module."):]: v for k, v in state.items()}
    bare["teacher.conv0.0.0.weight"] = torch.zeros(1)
    assert convert_state_dict(bare, cfg).keys() == ours.keys()


def test_wrong_or_missing_keys_are_one_clear_line():
    cfg = get_preset("4.25")
    state = rule_state_dict(cfg)
    missing = dict(state)
    del missing["module.block3.convblock.5.beta"]
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): block3\.convblock\.5\.beta") as e:
        convert_state_dict(missing, cfg)
    assert "\n" not in str(e.value)
    extra = {**state, "module.block5.conv0.0.0.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"unexpected 1 key\(s\): block5"):
        convert_state_dict(extra, cfg)
    # a file of another version: same names, other shapes
    with pytest.raises(CheckpointError, match=r"another RIFE version"):
        convert_state_dict(rule_state_dict(get_preset("4.26.heavy")), cfg)
    mixed = {("module." + k if i % 2 else k): v for i, (k, v) in
             enumerate({k[7:]: v for k, v in state.items()}.items())}
    with pytest.raises(CheckpointError, match="mixes"):
        convert_state_dict(mixed, cfg)


def test_corrupt_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "flownet.pkl"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_rife(bad)


def test_key_map_is_total_and_one_to_one():
    for cfg in PRESETS.values():
        with torch.device("meta"):
            net = IFNet(cfg)
        kmap = keymap.key_map(cfg)
        assert set(kmap) == set(net.state_dict())
        assert len(set(kmap.values())) == len(kmap)
        assert keymap.to_released(cfg)["encode.cnn3.weight"] == "encoder.up.weight"


def test_rule_value_is_defined_on_released_names():
    cfg = get_preset("4.25")
    state = rule_state_dict(cfg)
    k = "block0.conv0.0.0.weight"
    torch.testing.assert_close(state["module." + k], rule_tensor(k, tuple(state["module." + k].shape)))


def ramp_clip(n=4, h=40, w=56) -> Clip:
    yy, xx = np.mgrid[0:h, 0:w]
    frames = [np.stack([(xx * 4 + 9 * i) % 256, (yy * 5) % 256, ((xx + yy) * 3 + 5 * i) % 256], -1)
              for i in range(n)]
    return Clip(np.asarray(frames, dtype=np.uint8), 10.0)


def test_stage_retimes_and_keeps_originals(nets):
    stage = RIFEStage(network=nets["v425"])
    clip = ramp_clip(3)
    out = stage.process(clip, {"factor": 3}, None)
    assert out.num_frames == 7 and out.fps == 30.0 and out.frames.shape[1:] == clip.frames.shape[1:]
    np.testing.assert_array_equal(out.frames[::3], clip.frames)
    out15 = stage.process(clip, {"fps": 15}, None)
    assert out15.num_frames == output_count(3, 10, 15) == 4 and out15.fps == 15.0
    # the stage's in-betweens are the network's output on the padded pair
    with torch.no_grad():
        a = torch.from_numpy(clip.frames[0]).permute(2, 0, 1)[None].float() / 255
        b = torch.from_numpy(clip.frames[1]).permute(2, 0, 1)[None].float() / 255
        pad = (0, 64 - 56, 0, 64 - 40)
        y = nets["v425"](F.pad(a, pad), F.pad(b, pad), 1 / 3)[0, :, :40, :56].clamp(0, 1) * 255
    ref = y.round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(out.frames[1].astype(int) - ref.astype(int)).max() <= 1


def test_rife_in_chains_with_other_stages(nets):
    stage = RIFEStage(network=nets["v425"])
    clip = ramp_clip(2)
    res = chainlib.run_chains(clip, ["interpolate+upscale", "upscale+interpolate"],
                              {"rife": {"factor": 2}, "lanczos": {"scale": 2}},
                              roles={"interpolate": "rife"}, stages_by_name={"rife": stage})
    for r in res.values():
        assert r.clip.num_frames == 3 and r.clip.width == 112 and r.clip.fps == 20.0


def test_service_lists_rife_unavailable_without_weights_then_runs_it(tmp_path, nets):
    root = Path(__file__).resolve().parents[1]
    reg = json.loads((root / "models.json").read_text())
    models = {k: reg["models"][k] for k in ("kenburns", "lanczos", "dis-interp", "rife")}
    (tmp_path / "models.json").write_text(json.dumps({"schema": 1, "models": models}))
    studio = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=tmp_path / "models.json",
                                   min_free_bytes=0, device="cpu"))
    infos = {i.name: i for i in studio.model_infos("interpolator")}
    assert set(infos) == {"dis-interp", "rife"} and not infos["rife"].available
    img = ramp_clip(1, 48, 64).frames[0]
    req = JobRequest(img, CameraSpec(preset="push-in"), params={"width": 64, "height": 48, "num_frames": 4},
                     chains=("interpolate",), roles={"interpolate": "rife"})
    with pytest.raises(Unavailable, match="flownet.pkl"):
        list(studio.run_job(req))
    # with the weights present (here: the rule weights in the released layout) it runs
    (tmp_path / "pretrained_models" / "rife").mkdir(parents=True)
    torch.save(rule_state_dict(get_preset("4.25")), tmp_path / "pretrained_models" / "rife" / "flownet.pkl")
    events = list(studio.run_job(req))
    m = next(e for e in events if e.chain == "interpolate").metrics
    assert m["num_frames"] == 7 and m["generator_rate"]["num_frames"] == 4


def test_bad_version_option_is_a_config_error(tmp_path):
    from core.postprocess.rife import load_model
    from core.registry import Registry

    (tmp_path / "w.pkl").write_bytes(b"x")
    reg = Registry.from_dict({"models": {"rife": {
        "kind": "interpolator", "variant": "rife", "label": "RIFE", "options": {"version": "9.9"},
        "files": [{"role": "flownet", "path": "w.pkl"}]}}}, root=tmp_path)
    with pytest.raises(ConfigError, match="options.version"):
        load_model(reg, "rife")


def test_inspect_and_verify(tmp_path):
    from core.models import family_of

    fam = family_of("rife-4.25")
    entries = fam.inspect_entries("rife-4.25")
    assert len(entries) == 158 and entries[0][0].startswith("module.")
    assert sum(int(np.prod(s)) for _, s, _ in entries) == 5_664_776
    path = tmp_path / "flownet.pkl"
    torch.save(rule_state_dict(get_preset("4.25")), path)
    assert fam.verify_file("rife-4.25", path).ok
    v = fam.verify_file("rife-4.26.heavy", path)
    assert not v.ok and v.kind == "mismatch" and v.wrong_shape
