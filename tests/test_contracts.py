"""Input is parsed once, at the service boundary, and the layers agree on every limit.

The dashboard's controls come from a model's ParamSpecs; the model's own checks must accept
exactly the same ranges (a value the UI offers must never fail below, and a value the pipeline
would refuse must never be offered). These tests fail as soon as two layers disagree.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.errors import InputError
from core.params import resolve_params


def _outside(spec, side: str):
    """The nearest value beyond one end of a numeric spec's range."""
    step = spec.step or 1
    return spec.minimum - step if side == "below" else spec.maximum + step


def test_cami2v_sampling_options_take_their_limits_from_the_generator_controls():
    from core.generators.cami2v import VARIANTS, param_specs_for
    from core.models.cami2v.pipeline import SAMPLING_PARAMS, SamplingOptions

    fields = {f.name for f in dataclasses.fields(SamplingOptions)}
    for variant in VARIANTS.values():
        controls = {s.name: s for s in param_specs_for(variant)}
        sampling = [s for s in controls.values() if s.name in fields]
        # every sampling control the UI shows is the pipeline's own spec, and none is missing
        assert {s.name for s in sampling} == {s.name for s in SAMPLING_PARAMS}
        for spec in sampling:
            assert getattr(SamplingOptions(), spec.name) == spec.default, spec.name
            if spec.kind not in ("int", "float"):
                continue
            for inside in (spec.minimum, spec.maximum):  # both ends of the UI's range sample
                SamplingOptions(**{spec.name: inside}).check()
            for side in ("below", "above"):  # one step beyond is refused by the pipeline too
                if (spec.minimum if side == "below" else spec.maximum) is None:
                    continue
                with pytest.raises(InputError, match=spec.label):
                    SamplingOptions(**{spec.name: _outside(spec, side)}).check()
                with pytest.raises(InputError, match=spec.label):
                    resolve_params(param_specs_for(variant), {spec.name: _outside(spec, side)})


def test_cami2v_options_from_resolved_params_are_the_defaults():
    from core.generators.cami2v import VARIANTS, param_specs_for
    from core.models.cami2v.pipeline import SamplingOptions

    params = resolve_params(param_specs_for(VARIANTS["cami2v-512"]), {"steps": 250, "frame_stride": 10})
    assert SamplingOptions.from_params(params) == SamplingOptions(steps=250, frame_stride=10)
    SamplingOptions.from_params(params).check()


def test_chain_text_is_normalised_in_one_place():
    from core.apiargs import chains_arg
    from core.contracts import chain_name, normalise_chains

    assert chain_name(" Denoise + UPSCALE ") == "denoise+upscale"
    assert chain_name("") == "none"
    assert normalise_chains(["none, Denoise+ upscale", "denoise+upscale", " upscale "]) == [
        "none", "denoise+upscale", "upscale"]
    # the API's argument check keeps the text; the service normalises it the same way
    assert normalise_chains(chains_arg("Denoise , upscale")) == ["denoise", "upscale"]
    with pytest.raises(InputError, match="at least one chain"):
        normalise_chains([" , "])


def test_the_photo_rule_is_one_rule():
    from core.photo import MAX_ASPECT, MIN_SIDE, check_photo

    ok = np.zeros((MIN_SIDE, MIN_SIDE * MAX_ASPECT, 3), np.uint8)
    assert check_photo(ok) is ok
    for bad, match in ((np.zeros((MIN_SIDE - 1, 64, 3), np.uint8), "too small"),
                       (np.zeros((MIN_SIDE, MIN_SIDE * MAX_ASPECT + 1, 3), np.uint8), f"more than {MAX_ASPECT}:1"),
                       (np.zeros((64, 64), np.uint8), "RGB image"),
                       (np.zeros((64, 64, 3), np.float32), "RGB image")):
        with pytest.raises(InputError, match=match):
            check_photo(bad)
