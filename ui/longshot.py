"""Create-tab pieces for shots of any length: the Length / Output fps controls, the camera path
for the 3D view with its segment boundaries, and the seam-score line of the results."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.generators.segments import seam_summary
from core.service import Studio



def length_controls() -> tuple[Any, Any]:
    """The two Create-tab controls (0 means: the generator's own length / frame rate)."""
    with gr.Row():
        seconds = gr.Number(value=0, minimum=0, maximum=120, step=0.5, label="Length (seconds)",
                            elem_id="length-seconds",
                            info="0: the model's own clip (CamI2V: 16 frames, 1.6 s). AI models make longer shots "
                                 "from chained segments; Ken Burns renders any length.")
        fps = gr.Number(value=0, minimum=0, maximum=120, step=1, label="Output fps", elem_id="output-fps",
                        info="0: the generator's rate (10 fps for CamI2V). AI frames are interpolated to it.")
    return seconds, fps


def length_fields(seconds: Any, fps: Any) -> dict[str, Any]:
    """JobRequest keywords for the two controls (empty when the length is left at 0)."""
    s = float(seconds or 0)
    f = float(fps or 0)
    if s <= 0:
        if f > 0:
            raise gr.Error("Set a Length (seconds) to choose an output frame rate.")
        return {}
    return {"seconds": s, "output_fps": f if f > 0 else None}


def path_for_view(studio: Studio, model: str, spec: Any, seconds: Any, fps: Any):
    """(camera path with the shot's frame count, segment start frames) for the 3D path view."""
    fields = length_fields(seconds, fps)
    if not fields:
        return studio.camera_path(spec, model), ()
    length, plan = studio.shot_plan(model, fields["seconds"], fields["output_fps"])
    path = studio.camera_path(spec, model, length.num_frames)
    starts = tuple(s for s in plan.starts[1:]) if plan is not None else ()
    return path, starts


def run_seams(studio: Studio, run_id: str | None) -> dict[str, Any] | None:
    """The seam report of a run's generated clip (None for one-segment clips or unknown runs)."""
    if not run_id:
        return None
    try:
        info = studio.open_run(run_id).data.get("generator_info") or {}
    except Exception:
        return None
    seams = info.get("seams")
    return seams if isinstance(seams, dict) and seams.get("joins") else None


def seams_markdown(seams: dict[str, Any] | None) -> str:
    line = seam_summary(seams)
    return f"\n\n{line}" if line else ""


