"""Captioner tests on a tiny random Qwen2-VL built offline (tests/tiny_qwen.py).

They run the real code path on CPU: the parts-built processor, the chat template, SDPA
attention, greedy generation, clean-up and the caption cache. gptqmodel and bitsandbytes are
not installed in CI, so the quantized loads themselves are not exercised here; the vision-tower
skip-list fix is tested on configs and against transformers' own module-matching rule.
"""

from __future__ import annotations

import copy
import json
import threading

import numpy as np
import pytest
import torch

from core import captioner as cap_mod
from core.captioner import (
    CaptionCache,
    Qwen2VLCaptioner,
    build_processor,
    check_vision_tower,
    clean_caption,
    patch_quantization_config,
    protect_vision_tower,
    select_captioner,
)
from core.errors import Cancelled, CheckpointError, ConfigError, InputError, Unavailable, WeightsMissing
from core.progress import Progress
from core.registry import Registry

from tiny_qwen import build_tiny_qwen2vl

TOKENS = 8  # enough to exercise generation, few enough to keep the suite fast


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory):
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2vl"))


@pytest.fixture(scope="module")
def captioner(tiny_qwen_dir, tmp_path_factory):
    return Qwen2VLCaptioner.from_folder(tiny_qwen_dir, name="tiny", device="cpu", max_new_tokens=TOKENS,
                                        cache_dir=tmp_path_factory.mktemp("caption-cache"))


@pytest.fixture()
def photo():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)


class CountingGenerate:
    """Wraps model.generate and counts the calls."""

    def __init__(self, model):
        self.inner = model.generate
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def test_loads_on_cpu_with_sdpa_and_cpu_dtype(captioner):
    assert captioner.device.type == "cpu"
    assert captioner.dtype == cap_mod.pick_dtype("cpu")
    assert captioner.model.config._attn_implementation == "sdpa"
    tensors = list(captioner.model.parameters()) + list(captioner.model.buffers())
    assert captioner.nbytes == sum(t.numel() * t.element_size() for t in tensors)
    # The CPU pixel budget, not the one saved in the folder.
    assert captioner.processor.image_processor.size.longest_edge == cap_mod.CPU_MAX_PIXELS


def test_caption_is_cleaned_greedy_output(captioner, photo):
    raw = captioner.generate_raw(photo, cap_mod.DEFAULT_PROMPT, max_new_tokens=TOKENS)
    assert raw  # the random model does produce tokens
    text = captioner.caption(photo, use_cache=False)
    assert text == clean_caption(raw)
    assert "\n" not in text and text == text.strip()
    # Greedy decoding: the same image gives the same caption.
    assert captioner.caption(photo, use_cache=False) == text


def test_prompt_changes_the_model_input(captioner, photo):
    a = captioner.generate_raw(photo, "Describe the room.", max_new_tokens=TOKENS)
    b = captioner.generate_raw(photo, "Name the floor material and nothing else, please.", max_new_tokens=TOKENS)
    assert a != b


def test_cache_hit_skips_generate(captioner, photo, monkeypatch):
    counter = CountingGenerate(captioner.model)
    monkeypatch.setattr(captioner.model, "generate", counter)
    first = captioner.caption(photo, "Describe it.")
    assert counter.calls == 1
    assert captioner.caption(photo, "Describe it.") == first
    assert counter.calls == 1
    # Same pixels through a PIL image: still a hit.
    from PIL import Image

    assert captioner.caption(Image.fromarray(photo), "Describe it.") == first
    assert counter.calls == 1
    captioner.caption(photo, "Another prompt.")
    assert counter.calls == 2
    other = photo.copy()
    other[0, 0, 0] ^= 1
    captioner.caption(other, "Describe it.")
    assert counter.calls == 3
    captioner.caption(photo, "Describe it.", use_cache=False)
    assert counter.calls == 4


def test_disk_cache_survives_a_new_instance(captioner, photo, tmp_path):
    a = Qwen2VLCaptioner(captioner.model, captioner.processor, name="tiny", cache=CaptionCache(tmp_path),
                         max_new_tokens=TOKENS)
    text = a.caption(photo)
    data = json.loads((tmp_path / CaptionCache.FILENAME).read_text())
    assert [e["caption"] for e in data["entries"].values()] == [text]

    class NoModel(torch.nn.Linear):
        def __init__(self):
            super().__init__(1, 1)
            self.generation_config = captioner.model.generation_config

        def generate(self, *args, **kwargs):
            raise AssertionError("generate must not run on a cache hit")

    b = Qwen2VLCaptioner(captioner.model, captioner.processor, name="tiny", cache=CaptionCache(tmp_path),
                         max_new_tokens=TOKENS)
    b.model = NoModel()
    assert b.caption(photo) == text
    # The model name is part of the key.
    c = Qwen2VLCaptioner(NoModel(), captioner.processor, name="other-model", cache=CaptionCache(tmp_path))
    with pytest.raises(AssertionError, match="must not run"):
        c.caption(photo)


def test_cache_file_is_bounded_and_tolerates_garbage(tmp_path):
    (tmp_path / CaptionCache.FILENAME).write_text("{not json")
    cache = CaptionCache(tmp_path, max_entries=3)
    assert cache.get("x") is None
    for i in range(5):
        cache.put(f"k{i}", f"caption {i}")
    assert len(cache) == 3 and cache.get("k0") is None and cache.get("k4") == "caption 4"
    assert len(CaptionCache(tmp_path)) == 3


def test_cancel_stops_generation(captioner, photo):
    cancel = threading.Event()

    def on_progress(frac, msg):
        if "token 2" in msg:
            cancel.set()

    with pytest.raises(Cancelled):
        captioner.caption(photo, "A prompt that is not cached yet.", progress=Progress(on_progress, cancel))
    # Nothing was cached for the cancelled request.
    key = cap_mod.caption_key(photo, "A prompt that is not cached yet.", "tiny", max_new_tokens=TOKENS,
                              max_words=cap_mod.DEFAULT_MAX_WORDS)
    assert captioner.cache.get(key) is None


def test_qwen2_5_vl_folder_loads_through_the_same_path(tmp_path):
    folder = build_tiny_qwen2vl(tmp_path / "tiny25", arch="qwen2_5_vl")
    cap = Qwen2VLCaptioner.from_folder(folder, name="tiny25", device="cpu", max_new_tokens=4)
    assert type(cap.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(cap.processor).__name__ == "ImageOnlyQwen2_5_VLProcessor"
    assert isinstance(cap.caption(np.full((40, 56, 3), 200, np.uint8)), str)


def test_bad_inputs_raise_input_error(captioner, tmp_path):
    with pytest.raises(InputError):
        captioner.caption(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(InputError, match="not found"):
        captioner.caption(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        captioner.caption(tmp_path / "text.png")
    with pytest.raises(InputError, match="prompt"):
        captioner.caption(np.zeros((32, 32, 3), np.uint8), "x" * 5000)


def test_processor_caps_pixels(tiny_qwen_dir):
    proc = build_processor(tiny_qwen_dir, max_pixels=112 * 112)
    from PIL import Image

    out = proc.image_processor(images=[Image.new("RGB", (1280, 720))], return_tensors="pt")
    t, h, w = out["image_grid_thw"][0].tolist()
    assert t == 1 and h * w * 14 * 14 <= 112 * 112
    assert proc.video_processor is None  # image-only: no torchvision needed


@pytest.mark.parametrize(
    "raw, words, expected",
    [
        ("  A bright kitchen.\n\nWhite cabinets. ", 30, "A bright kitchen. White cabinets."),
        ('"A cosy bedroom with a wooden floor"', 30, "A cosy bedroom with a wooden floor"),
        ("Caption: Living room, grey sofa", 30, "Living room, grey sofa"),
        ("one two three, four five", 3, "one two three."),
        ("tab\tand\x07bell", 30, "tab and bell"),
        ("one two three", 0, "one two three"),
    ],
)
def test_clean_caption(raw, words, expected):
    assert clean_caption(raw, words) == expected


# -- the vision-tower skip-list fix ----------------------------------------------------------------

def _vision_linear_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".visual." in f".{n}"]


def test_skip_list_fix_on_a_checkpoint_config(captioner):
    """Qwen's AWQ config says ["visual"]; transformers 5 names the tower model.visual.*, so with the
    shipped list every vision layer would be converted. After the fix none is."""
    from transformers import Qwen2VLConfig
    from transformers.quantizers.quantizers_utils import should_convert_module

    config = Qwen2VLConfig.from_dict(captioner.model.config.to_dict())
    config.quantization_config = {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm",
                                  "zero_point": True, "modules_to_not_convert": ["visual"]}
    names = _vision_linear_names(captioner.model)
    assert names and all(n.startswith("model.visual.") for n in names)
    # The bug, as transformers' own matching rule sees it.
    assert all(should_convert_module(n, ["visual"]) for n in names)

    assert protect_vision_tower(config) is True
    skip = config.quantization_config["modules_to_not_convert"]
    assert {"model.visual", "visual"} <= set(skip)
    assert not any(should_convert_module(n, skip) for n in names)
    # The language model is still quantized.
    assert should_convert_module("model.language_model.layers.0.mlp.up_proj", skip)
    # Idempotent.
    protect_vision_tower(config)
    assert config.quantization_config["modules_to_not_convert"] == skip


def test_skip_list_fix_on_quantization_objects():
    from transformers import AwqConfig, BitsAndBytesConfig

    awq = patch_quantization_config(AwqConfig(bits=4, group_size=128, modules_to_not_convert=["visual"]))
    assert awq.modules_to_not_convert == ["visual", "model.visual"]
    bnb = patch_quantization_config(BitsAndBytesConfig(load_in_4bit=True, llm_int8_skip_modules=["visual"]))
    assert set(bnb.llm_int8_skip_modules) == {"visual", "model.visual", "lm_head"}
    raw_bnb = patch_quantization_config({"quant_method": "bitsandbytes", "llm_int8_skip_modules": None})
    assert set(raw_bnb["llm_int8_skip_modules"]) == {"visual", "model.visual", "lm_head"}
    assert protect_vision_tower(object()) is False  # unquantized config: nothing to do
    assert set(cap_mod.nf4_config().llm_int8_skip_modules) >= {"model.visual", "lm_head"}


def test_check_vision_tower_refuses_converted_layers(captioner):
    check_vision_tower(captioner.model)  # the real tower passes

    class FakeQuantLinear(torch.nn.Module):  # stands in for a gptqmodel / bitsandbytes layer
        def __init__(self):
            super().__init__()
            self.qweight = torch.nn.Parameter(torch.zeros(4, 4, dtype=torch.int32), requires_grad=False)

    model = copy.deepcopy(captioner.model)
    name = _vision_linear_names(model)[0]
    parent, leaf = name.rsplit(".", 1)
    setattr(model.get_submodule(parent), leaf, FakeQuantLinear())
    with pytest.raises(CheckpointError, match="model.visual"):
        check_vision_tower(model)


def test_quantized_folder_needs_cuda_and_gptqmodel(tiny_qwen_dir, tmp_path):
    import shutil

    awq_dir = tmp_path / "awq"
    shutil.copytree(tiny_qwen_dir, awq_dir)
    cfg = json.loads((awq_dir / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm",
                                  "zero_point": True, "modules_to_not_convert": ["visual"]}
    (awq_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(Unavailable, match="CUDA"):
        cap_mod.load_model(awq_dir, device="cpu")
    if cap_mod._importable("gptqmodel"):
        pytest.skip("gptqmodel is installed; the missing-package message cannot be checked")
    with pytest.raises(Unavailable, match="gptqmodel"):
        cap_mod.load_model(awq_dir, device="cuda")
    with pytest.raises(CheckpointError, match="unquantized"):
        cap_mod.load_model(tiny_qwen_dir, device="cuda", quantization="awq")


# -- registry -----------------------------------------------------------------------------------

def _registry(tmp_path, model_path):
    return Registry.from_dict({"schema": 1, "models": {
        "qwen2-vl-7b-awq": {"kind": "captioner", "variant": "qwen2-vl", "label": "Qwen2-VL 7B AWQ",
                            "needs_gpu": True, "requires": ["transformers", "gptqmodel"],
                            "options": {"quantization": "awq"},
                            "files": [{"role": "model", "path": "pretrained_models/Qwen2-VL-7B-Instruct-AWQ",
                                       "repo": "Qwen/Qwen2-VL-7B-Instruct-AWQ", "snapshot": True}]},
        "qwen2-vl-2b": {"kind": "captioner", "variant": "qwen2-vl", "label": "Qwen2-VL 2B",
                        "requires": ["transformers"], "options": {"max_new_tokens": TOKENS},
                        "files": [{"role": "model", "path": str(model_path),
                                   "repo": "Qwen/Qwen2-VL-2B-Instruct", "snapshot": True}]},
    }}, root=tmp_path)


def test_select_and_load_from_registry(tiny_qwen_dir, tmp_path):
    reg = _registry(tmp_path, tiny_qwen_dir)
    assert select_captioner(reg, "cpu").name == "qwen2-vl-2b"
    cap = Qwen2VLCaptioner.from_registry(reg, device="cpu", cache_dir=tmp_path / "cache")
    assert cap.name == "qwen2-vl-2b" and cap.max_new_tokens == TOKENS
    assert cap.caption(np.full((40, 40, 3), 128, np.uint8)) is not None
    with pytest.raises(Unavailable, match="CUDA"):
        Qwen2VLCaptioner.from_registry(reg, "qwen2-vl-7b-awq", device="cpu")


def test_selection_on_a_gpu_machine_prefers_the_big_model(tiny_qwen_dir, tmp_path):
    """models.json order is the preference order: AWQ (skipped without gptqmodel), 7B, then 2B."""
    data = {"models": {
        "qwen2-vl-7b-awq": {"kind": "captioner", "variant": "qwen2-vl", "needs_gpu": True,
                            "requires": ["gptqmodel"], "options": {"quantization": "awq"},
                            "files": [{"role": "model", "path": str(tiny_qwen_dir)}]},
        "qwen2-vl-7b": {"kind": "captioner", "variant": "qwen2-vl", "needs_gpu": True,
                        "files": [{"role": "model", "path": str(tiny_qwen_dir)}]},
        "qwen2-vl-2b": {"kind": "captioner", "variant": "qwen2-vl",
                        "files": [{"role": "model", "path": str(tiny_qwen_dir)}]},
    }}
    reg = Registry.from_dict(data, root=tmp_path)
    expected = "qwen2-vl-7b-awq" if cap_mod._importable("gptqmodel") else "qwen2-vl-7b"
    assert select_captioner(reg, "cuda").name == expected
    assert select_captioner(reg, "cpu").name == "qwen2-vl-2b"
    del data["models"]["qwen2-vl-2b"]
    with pytest.raises(Unavailable, match="qwen2-vl-7b: needs a CUDA GPU"):
        select_captioner(Registry.from_dict(data, root=tmp_path), "cpu")


def test_missing_weights_name_the_fetch_command(tmp_path):
    reg = _registry(tmp_path, tmp_path / "pretrained_models" / "Qwen2-VL-2B-Instruct")
    with pytest.raises(WeightsMissing) as err:
        Qwen2VLCaptioner.from_registry(reg, "qwen2-vl-2b", device="cpu")
    msg = str(err.value)
    assert "python -m core.weights fetch qwen2-vl-2b" in msg and "Qwen2-VL-2B-Instruct" in msg
    with pytest.raises(WeightsMissing, match="fetch qwen2-vl-2b"):
        select_captioner(reg, "cpu")
    # An empty folder (an interrupted download) is reported the same way.
    (tmp_path / "pretrained_models" / "Qwen2-VL-2B-Instruct").mkdir(parents=True)
    with pytest.raises(WeightsMissing, match="fetch qwen2-vl-2b"):
        Qwen2VLCaptioner.from_registry(reg, "qwen2-vl-2b", device="cpu")


def test_bad_options_are_config_errors(tmp_path, tiny_qwen_dir):
    reg = Registry.from_dict({"models": {"cap": {"kind": "captioner", "variant": "qwen2-vl",
                                                 "options": {"quantization": "int3"},
                                                 "files": [{"role": "model", "path": str(tiny_qwen_dir)}]}}},
                             root=tmp_path)
    with pytest.raises(ConfigError, match="quantization"):
        Qwen2VLCaptioner.from_registry(reg, "cap", device="cpu")


def test_cpu_dtype_follows_the_cpu():
    assert cap_mod.pick_dtype("cpu") == (torch.bfloat16 if cap_mod.cpu_supports_bf16() else torch.float32)
