"""Checkpoint loading: every file format and wrapper, base + camera overlays, the
DynamiCrafter-256 rename, ignored schedule buffers, strict-mismatch and wrong-variant errors,
damaged files, and `python -m core.models verify` on full-size layouts (header-only files)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.errors import CheckpointError, WeightsMissing
from core.models.cami2v import inspect_entries, keymap, verify_file
from core.models.cami2v.config import tiny_params
from core.models.cami2v.loader import identify, load_checkpoint_files, load_pretrained, load_weights, open_checkpoint
from core.models.cami2v.model import build_meta, build_with_weight_rule


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _upstream_state(camera: str) -> dict[str, torch.Tensor]:
    model = build_with_weight_rule(tiny_params(camera), component_presets="tiny")
    return {keymap.to_upstream(k): v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def states():
    return {cam: _upstream_state(cam) for cam in ("none", "cami2v", "cameractrl", "motionctrl")}


def _load(camera: str, *paths, **kw):
    return load_pretrained(tiny_params(camera), list(paths), component_presets="tiny", **kw)


def _assert_matches(model, upstream: dict[str, torch.Tensor], skip_derived: bool = True):
    for key, value in model.state_dict().items():
        up = keymap.to_upstream(key)
        if skip_derived and (up in keymap.TOP_LEVEL_BUFFERS or up.endswith(".pe")):
            continue
        assert torch.equal(value, upstream[up].to(value.dtype)), key


@pytest.mark.parametrize("fmt", ["pt-state_dict", "pt-module", "ckpt-raw", "safetensors"])
def test_full_checkpoint_formats_load_strictly(tmp_path, states, fmt):
    sd = states["cami2v"]
    if fmt == "safetensors":
        path = tmp_path / "full.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        path = tmp_path / ("full.ckpt" if fmt == "ckpt-raw" else "full.pt")
        obj = sd if fmt == "ckpt-raw" else {fmt.split("-")[1]: sd, "epoch": 3, "global_step": 50000}
        torch.save(obj, path)
    model = _load("cami2v", path)
    _assert_matches(model, sd)
    assert not any(p.is_meta for p in model.parameters()) and not any(b.is_meta for b in model.buffers())
    assert not any(p.requires_grad for p in model.parameters())
    f = open_checkpoint(path)
    assert f.wrapper == (None if fmt in ("ckpt-raw", "safetensors") else fmt.split("-")[1])


def test_camera_only_overlay_on_base(tmp_path, states):
    full = states["cami2v"]
    base_keys = set(states["none"])
    base = {k: v for k, v in full.items() if k in base_keys}
    overlay = {k: v for k, v in full.items() if k not in base_keys}
    assert any(".epipolar." in k for k in overlay) and any(k.startswith("pose_encoder.") for k in overlay)
    torch.save({"state_dict": base}, tmp_path / "base.ckpt")
    save_file({k: v.contiguous() for k, v in overlay.items()}, str(tmp_path / "camera.safetensors"))
    model = _load("cami2v", tmp_path / "base.ckpt", tmp_path / "camera.safetensors")
    _assert_matches(model, full)
    # the camera file alone is not enough, and the error says what to do
    with pytest.raises(CheckpointError, match=r"missing keys.*base checkpoint") as err:
        _load("cami2v", tmp_path / "camera.safetensors")
    assert "925 missing keys: model.diffusion_model.time_embed.0.weight" in str(err.value)


def test_load_checkpoint_files_decides_full_or_overlay(tmp_path, states):
    full = states["cameractrl"]
    base = {k: v for k, v in full.items() if k in states["none"]}
    torch.save(full, tmp_path / "full.pt")
    torch.save({"state_dict": base}, tmp_path / "base.ckpt")
    save_file({k: v.contiguous() for k, v in full.items() if k not in base}, str(tmp_path / "cam.safetensors"))
    params = tiny_params("cameractrl")
    kw = dict(component_presets="tiny")
    _assert_matches(load_checkpoint_files(params, tmp_path / "full.pt", base=tmp_path / "absent.ckpt", **kw), full)
    _assert_matches(load_checkpoint_files(params, tmp_path / "cam.safetensors", base=tmp_path / "base.ckpt", **kw),
                    full)
    with pytest.raises(WeightsMissing, match="core.weights fetch cameractrl-256"):
        load_checkpoint_files(params, tmp_path / "cam.safetensors", base=tmp_path / "absent.ckpt",
                              fetch_name="cameractrl-256", **kw)


def test_overlay_wins_over_base(tmp_path, states):
    """MotionCtrl's camera file re-trains temporal attn2, which the base also holds."""
    full = states["motionctrl"]
    key = "model.diffusion_model.input_blocks.1.2.transformer_blocks.0.attn2.to_q.weight"
    base = {k: v for k, v in full.items() if k in states["none"]}
    base[key] = torch.zeros_like(base[key])
    overlay = {k: v for k, v in full.items() if k not in states["none"] or ".attn2." in k}
    torch.save(base, tmp_path / "base.pt")
    torch.save({"module": overlay}, tmp_path / "camera.pt")
    model = _load("motionctrl", tmp_path / "base.pt", tmp_path / "camera.pt")
    _assert_matches(model, full)


def test_dynamicrafter_256_framestride_rename(tmp_path, states):
    sd = {k.replace("fps_embedding", "framestride_embed"): v for k, v in states["none"].items()}
    assert any("framestride_embed" in k for k in sd)
    torch.save({"state_dict": sd}, tmp_path / "dc256.ckpt")
    assert open_checkpoint(tmp_path / "dc256.ckpt").format == "dynamicrafter-256"
    model = _load("none", tmp_path / "dc256.ckpt")
    _assert_matches(model, states["none"])


def test_schedule_buffers_in_file_are_ignored(tmp_path, states):
    sd = dict(states["cami2v"])
    sd["betas"] = torch.full_like(sd["betas"], 7.0)
    sd["scale_arr"] = torch.ones(1400)  # even one the preset does not have
    pe = next(k for k in sd if k.endswith(".pe"))
    sd[pe] = torch.zeros_like(sd[pe])
    torch.save(sd, tmp_path / "x.pt")
    model = _load("cami2v", tmp_path / "x.pt")
    assert float(model.betas.max()) < 0.02 and not hasattr(model, "scale_arr")
    assert model.state_dict()[keymap.to_ours(pe)].abs().max() > 0.5


def test_cast_on_load_and_partial_build(tmp_path, states):
    torch.save(states["cameractrl"], tmp_path / "cc.pt")
    model = _load("cameractrl", tmp_path / "cc.pt", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.betas.dtype == torch.float32
    part = _load("cameractrl", tmp_path / "cc.pt", parts=("unet", "pose_encoder"))
    assert part.vae is None and part.unet is not None
    meta = build_meta(tiny_params("cameractrl"), parts=("unet", "pose_encoder"), component_presets="tiny")
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_weights(meta, [tmp_path / "cc.pt"])


def test_missing_unexpected_and_wrong_shape_are_listed(tmp_path, states):
    sd = dict(states["cami2v"])
    dropped = [k for k in sd if k.startswith("model.diffusion_model.output_blocks.")][:20]
    for k in dropped:
        del sd[k]
    sd["model.diffusion_model.not_a_layer.weight"] = torch.zeros(3)
    shape_key = "model.diffusion_model.out.2.bias"
    sd[shape_key] = torch.zeros(5)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        _load("cami2v", tmp_path / "bad.pt")
    msg = str(err.value)
    assert "20 missing keys" in msg and dropped[0] in msg and "(+12 more)" in msg
    assert "1 unexpected keys: model.diffusion_model.not_a_layer.weight" in msg
    assert f"{shape_key} [5] != [4]" in msg
    assert "\n" not in msg  # one line


def test_wrong_variant_is_named(tmp_path, states):
    torch.save(states["cameractrl"], tmp_path / "cc.pt")
    with pytest.raises(CheckpointError, match="cc.pt looks like cameractrl"):
        _load("cami2v", tmp_path / "cc.pt")
    torch.save(states["motionctrl"], tmp_path / "mc.pt")
    with pytest.raises(CheckpointError, match="mc.pt looks like motionctrl"):
        _load("cameractrl", tmp_path / "mc.pt")
    assert identify({k: tuple(v.shape) for k, v in states["cami2v"].items()}) == "cami2v"
    with_alpha = {k: tuple(v.shape) for k, v in states["cami2v"].items()}
    with_alpha["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.alpha"] = ()
    assert identify(with_alpha) == "cami2v-256"
    assert identify({"scale_arr": (1400,), **with_alpha}) == "cami2v-512"
    assert identify({"foo.weight": (3,)}) == "unknown"


def test_damaged_and_missing_files(tmp_path, states):
    torch.save(states["none"], tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        _load("none", tmp_path / "truncated.pt")
    (tmp_path / "garbage.safetensors").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        _load("none", tmp_path / "garbage.safetensors")
    save_file({k: v.contiguous() for k, v in states["none"].items()}, str(tmp_path / "good.safetensors"))
    data = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        _load("none", tmp_path / "cut.safetensors")
    (tmp_path / "weird.bin2").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="extension"):
        _load("none", tmp_path / "weird.bin2")
    torch.save({"state_dict": states["none"], "hyper_parameters": _Opaque()}, tmp_path / "objects.ckpt")
    with pytest.raises(CheckpointError, match="Python objects besides tensors"):
        _load("none", tmp_path / "objects.ckpt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="state dict"):
        _load("none", tmp_path / "list.pt")
    with pytest.raises(WeightsMissing, match="nowhere.pt"):
        _load("none", tmp_path / "nowhere.pt")


class _Opaque:
    """Stands for a pickled config object (e.g. a training framework's hyper-parameters)."""


# -- verify: full-size layouts without the data ----------------------------------------------------

_ST_NAMES = {"float32": "F32"}


def _sparse_safetensors(path: Path, entries) -> Path:
    """A valid safetensors header for `entries`; the data region is a hole (sparse file)."""
    header, offset = {}, 0
    for key, shape, dtype in entries:
        n = 4
        for s in shape:
            n *= s
        header[key] = {"dtype": _ST_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return path


def _layout(name: str, keep=lambda k: True):
    return [e for e in inspect_entries(name) if keep(e[0])]


def test_verify_full_camera_only_base_and_wrong_files(tmp_path):
    full = _sparse_safetensors(tmp_path / "512_cami2v.safetensors", _layout("cami2v-512"))
    v = verify_file("cami2v-512", full)
    assert v.ok and v.kind == "full" and v.identified == "cami2v-512"

    base_keys = {e[0] for e in inspect_entries("dynamicrafter-512")}
    cam = _sparse_safetensors(tmp_path / "cam.safetensors", _layout("cami2v-512", lambda k: k not in base_keys))
    v = verify_file("cami2v-512", cam)
    assert v.ok and v.kind == "camera-only" and "dynamicrafter-512" in v.message

    base = _sparse_safetensors(tmp_path / "dc512.safetensors", _layout("dynamicrafter-512"))
    v = verify_file("cami2v-512", base)
    assert v.ok and v.kind == "base"

    wrong_res = _sparse_safetensors(tmp_path / "256_cami2v.safetensors", _layout("cami2v-256"))
    v = verify_file("cami2v-512", wrong_res)
    assert not v.ok and "looks like a cami2v-256 checkpoint" in v.message and len(v.unexpected) == 16
    # loading refuses it before reading any data
    with pytest.raises(CheckpointError, match=r"looks like cami2v-256\); 16 unexpected keys: .*attn2\.alpha"):
        load_weights(build_meta("cami2v-512"), [wrong_res])

    wrong_kind = _sparse_safetensors(tmp_path / "256_cameractrl.safetensors", _layout("cameractrl-256"))
    v = verify_file("cami2v-256", wrong_kind)
    assert not v.ok and "looks like a cameractrl-256 checkpoint" in v.message


def test_verify_torch_file_memory_mapped(tmp_path):
    """A .pt with full-size MotionCtrl camera tensors stored as 1-element views (no memory)."""
    base_keys = {e[0] for e in inspect_entries("dynamicrafter-256")}
    entries = _layout("motionctrl-256", lambda k: k not in base_keys or ".attn2." in k and "transformer_blocks" in k)
    sd = {k: torch.zeros(()).expand(tuple(shape)) for k, shape, _ in entries}
    torch.save({"state_dict": sd}, tmp_path / "256_motionctrl.pt")
    assert (tmp_path / "256_motionctrl.pt").stat().st_size < 5_000_000
    v = verify_file("motionctrl-256", tmp_path / "256_motionctrl.pt")
    assert v.ok and v.kind == "camera-only", v.message


def test_verify_cli(tmp_path, repo_root, capsys):
    from core.models.__main__ import main

    good = _sparse_safetensors(tmp_path / "mc.safetensors", _layout("motionctrl-256"))
    bad = _sparse_safetensors(tmp_path / "cc.safetensors", _layout("cameractrl-256"))
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    ok = subprocess.run([sys.executable, "-m", "core.models", "verify", "motionctrl-256", str(good)], cwd=repo_root,
                        env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: "), ok.stderr
    assert "full motionctrl-256 checkpoint" in ok.stdout

    assert main(["verify", "motionctrl-256", str(bad), "--json"]) == CheckpointError.exit_code
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and "cameractrl-256" in report["message"] and report["missing"]
    assert main(["verify", "motionctrl-256", str(tmp_path / "absent.pt")]) == WeightsMissing.exit_code
    assert "absent.pt" in capsys.readouterr().err
