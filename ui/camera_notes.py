"""The line under the camera controls that says what the selected generator does with the path."""

from __future__ import annotations

from typing import Any

NO_CAMERA = "This model has no camera control: the camera path is ignored."
ORBIT = ("This model follows the path as an orbit around the object (one elevation and azimuth per "
         "frame): orbit presets map directly; other paths are projected onto the orbit sphere, and the "
         "result says so. The clip starts on the photo's view.")
OWN_ORBIT = ("This model makes its own full orbit around the object: the camera path is ignored.")


def camera_note(info: Any) -> str:
    """"" when the path is followed as drawn; otherwise one line (info: a service ModelInfo or None)."""
    if info is None:
        return ""
    if getattr(info, "variant", "") == "sv3d":
        return ORBIT if info.camera_control else OWN_ORBIT
    return "" if info.camera_control else NO_CAMERA
