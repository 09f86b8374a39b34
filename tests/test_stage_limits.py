"""A post-processing stage's controls are the one source of its limits: the model code below a
stage checks the same values against the same specs. These tests fail as soon as the two ends
disagree (a value the dashboard offers failing below, or a range the pipeline widens on its own).
"""

from __future__ import annotations

import dataclasses

import pytest

from core.errors import InputError


def _outside(spec, side: str):
    step = spec.step or 1
    return spec.minimum - step if side == "below" else spec.maximum + step


def test_upscale_a_video_settings_take_their_limits_from_the_stage_controls():
    from core.models.upscale_a_video.params import CHECKED_SETTINGS, STAGE_PARAMS
    from core.models.upscale_a_video.pipeline import UpscaleSettings
    from core.models.upscale_a_video.unet import PRESETS
    from core.postprocess.upscale_a_video import UpscaleAVideoStage

    specs = {s.name: s for s in UpscaleAVideoStage(load_model=lambda: None).param_specs()}
    assert tuple(specs.values()) == STAGE_PARAMS  # the stage shows exactly the shared specs
    max_noise = PRESETS["upscale-a-video"].max_noise_level
    assert specs["noise_level"].maximum == max_noise  # the control offers the UNet's whole range
    fields = {f.name for f in dataclasses.fields(UpscaleSettings)}
    for name, spec in specs.items():
        if name in fields and name != "propagation_steps":  # (text there, parsed step indices here)
            # the pipeline's defaults are the controls' defaults
            assert getattr(UpscaleSettings(), name) == spec.default, name
    for name in CHECKED_SETTINGS:
        spec = specs[name]
        if spec.kind == "choice":
            for choice in spec.choices:
                UpscaleSettings(**{name: choice}).validate(max_noise)
            with pytest.raises(InputError):
                UpscaleSettings(**{name: "sharpen"}).validate(max_noise)
            continue
        for inside in (spec.minimum, spec.maximum):  # both ends of the control's range run
            UpscaleSettings(**{name: inside}).validate(max_noise)
        for side in ("below", "above"):  # and the pipeline refuses what the control cannot offer
            with pytest.raises(InputError):
                UpscaleSettings(**{name: _outside(spec, side)}).validate(max_noise)
    # the tile size is not re-checked with other limits: every tile the control offers runs
    for tile in (specs["tile_size"].minimum, specs["tile_size"].maximum):
        UpscaleSettings(tile_size=tile).validate(max_noise)


def test_upscale_a_video_steps_above_the_control_are_refused_below_it():
    from core.models.upscale_a_video.pipeline import UpscaleSettings

    with pytest.raises(InputError, match="steps"):
        UpscaleSettings(steps=201).validate(350)  # the pipeline once took up to 1000
