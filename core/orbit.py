"""Orbits for SV3D: per-frame elevation/azimuth, from a list of degrees or from a camera path.

Two frame orders meet here:

* the **studio order**: frame 0 is the photo's view (what every generator returns);
* the **model order** of SV3D and of the SVD tool's `--elevations-deg` / `--azimuths-deg`:
  the photo's view is the LAST frame; azimuths are taken relative to the last one.

`to_model_order` / `to_studio_order` rotate between them by one frame.

`model_angles` is the SVD tool's conversion, number for number (it is what the SV3D release's
sampling script does): one elevation or one per frame; azimuths default to 360/N steps ending
at 0; polar = radians(90 - elevation); azimuth = radians((a - a_last) mod 360).

`orbit_from_path` turns a studio camera path into elevations/azimuths (studio order): the
orbit centre is the point on the photo camera's optical axis that best fits a sphere through
every camera centre (exact for the orbit presets); each camera's direction from that centre
gives its azimuth (positive: the camera moves to its right around the object) and elevation
(added to `base_elevation_deg`, the photo's own elevation). A path whose centres do not lie on
that sphere is projected onto it, and a warning says so. The azimuth sign assumes SV3D's
renders measure azimuth counter-clockwise seen from above (so a growing azimuth moves the
camera to its right); without the released weights this could not be checked by rendering.

Float64 numpy throughout; no torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import InputError

DEFAULT_ELEVATION_DEG = 10.0  # the SVD tool's default
SPHERE_TOLERANCE = 0.05  # relative spread of camera distances before a path counts as "not an orbit"


@dataclass(frozen=True)
class ModelAngles:
    """What SV3D-P is conditioned on, model order (photo's view last), radians, float64."""

    polars_rad: tuple[float, ...]
    azimuths_rad: tuple[float, ...]


@dataclass(frozen=True)
class Orbit:
    """Per-frame elevation and azimuth in degrees, one per frame of the clip.

    order: "studio" (frame 0 is the photo's view) or "model" (the photo's view is last).
    warnings: what the user should know about how the orbit was made (projection, fallback).
    """

    elevations_deg: tuple[float, ...]
    azimuths_deg: tuple[float, ...]
    order: str = "studio"
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.elevations_deg) != len(self.azimuths_deg):
            raise InputError(f"An orbit needs as many elevations as azimuths "
                             f"({len(self.elevations_deg)} != {len(self.azimuths_deg)}).")
        if self.order not in ("studio", "model"):
            raise ValueError(f"order must be 'studio' or 'model', got {self.order!r}")

    @property
    def num_frames(self) -> int:
        return len(self.elevations_deg)

    def in_model_order(self) -> "Orbit":
        if self.order == "model":
            return self
        return Orbit(tuple(to_model_order(self.elevations_deg)), tuple(to_model_order(self.azimuths_deg)),
                     "model", self.warnings)

    def angles(self) -> ModelAngles:
        """The model's conditioning angles (the tool's conversion, see `model_angles`)."""
        m = self.in_model_order()
        return model_angles(list(m.elevations_deg), list(m.azimuths_deg), m.num_frames)


def to_model_order(values: Sequence[Any]) -> list[Any]:
    """Studio order (photo first) -> model order (photo last)."""
    values = list(values)
    return values[1:] + values[:1]


def to_studio_order(values: Sequence[Any]) -> list[Any]:
    """Model order (photo last) -> studio order (photo first); works on numpy arrays too."""
    if isinstance(values, np.ndarray):
        return np.concatenate([values[-1:], values[:-1]])
    values = list(values)
    return values[-1:] + values[:-1]


def default_azimuths_deg(num_frames: int) -> np.ndarray:
    """The tool's default azimuths: 360/N steps, the last one 0 (model order)."""
    return np.linspace(0, 360, num_frames + 1)[1:] % 360


def model_angles(elevations_deg: float | Sequence[float], azimuths_deg: Sequence[float] | None,
                 num_frames: int) -> ModelAngles:
    """The SVD tool's elevation/azimuth conversion (model order), exactly.

    elevations_deg: one value for every frame, or `num_frames` values.
    azimuths_deg: `num_frames` values, or None for `default_azimuths_deg`.
    """
    if isinstance(elevations_deg, (int, float)):
        elevations_deg = [elevations_deg] * num_frames
    if len(elevations_deg) != num_frames:
        raise InputError(f"Give 1 elevation or a list of {num_frames} (one per frame); got {len(elevations_deg)}.")
    if azimuths_deg is None:
        azimuths_deg = default_azimuths_deg(num_frames)
    if len(azimuths_deg) != num_frames:
        raise InputError(f"Give a list of {num_frames} azimuths (one per frame); got {len(azimuths_deg)}.")
    polars = [np.deg2rad(90 - e) for e in elevations_deg]
    azimuths = [np.deg2rad((a - azimuths_deg[-1]) % 360) for a in azimuths_deg]
    return ModelAngles(tuple(float(p) for p in polars), tuple(float(a) for a in azimuths))


def parse_degrees(text: Any, what: str) -> float | list[float] | None:
    """A CLI/API value as the SVD tool took it: "10", 10, "[10,15,20]" or a list -> float or
    list of floats; None or "" -> None. InputError (one line) for anything else."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    value = text
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise InputError(f"{what} must be a number or a list like [10,15,20]; got {text!r}.") from None
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number or a list of numbers; got {text!r}.")
    if isinstance(value, (int, float)):
        values = [float(value)]
        scalar = True
    elif isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        values = [float(v) for v in value]
        scalar = False
    else:
        raise InputError(f"{what} must be a number or a non-empty list of numbers; got {text!r}.")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{what} must be finite numbers; got {text!r}.")
    return values[0] if scalar else values


def orbit_from_degrees(elevations_deg: float | Sequence[float] | None, azimuths_deg: Sequence[float] | None,
                       num_frames: int) -> Orbit:
    """An orbit from the tool's lists (model order; None: the tool's defaults)."""
    el = DEFAULT_ELEVATION_DEG if elevations_deg is None else elevations_deg
    if isinstance(el, (int, float)):
        el = [float(el)] * num_frames
    az = default_azimuths_deg(num_frames) if azimuths_deg is None else azimuths_deg
    if len(el) != num_frames:
        raise InputError(f"Give 1 elevation or a list of {num_frames} (one per frame); got {len(el)}.")
    if len(az) != num_frames:
        raise InputError(f"Give a list of {num_frames} azimuths (one per frame); got {len(az)}.")
    return Orbit(tuple(float(v) for v in el), tuple(float(v) for v in az), "model")


def default_orbit(num_frames: int, elevation_deg: float = DEFAULT_ELEVATION_DEG, warnings: Sequence[str] = ()) -> Orbit:
    """The tool's default orbit (a full turn at one elevation), as an Orbit in model order."""
    o = orbit_from_degrees(elevation_deg, None, num_frames)
    return Orbit(o.elevations_deg, o.azimuths_deg, "model", tuple(warnings))


def orbit_from_path(path: Any, base_elevation_deg: float = DEFAULT_ELEVATION_DEG) -> Orbit:
    """A camera path (core.camera.CameraPath) -> Orbit in studio order (see the module docstring).

    A path whose cameras do not move gives the default full orbit, with a warning.
    """
    c2w = np.asarray(path.c2w(), dtype=np.float64)  # (T, 4, 4)
    rel = np.linalg.inv(c2w[0])[None] @ c2w  # poses relative to the photo's camera
    centres = rel[:, :3, 3]
    n = len(centres)
    if np.abs(centres).max() < 1e-9:
        return default_orbit(n, base_elevation_deg, (
            "The camera path does not move the camera, so SV3D-P follows its default full orbit.",))
    # Centre on the optical axis (0, 0, t): |c - t z|^2 = t^2 for every camera, least squares in t.
    cz = centres[:, 2]
    denom = 2.0 * float(np.sum(cz * cz))
    t = float(np.sum(np.sum(centres ** 2, 1) * cz)) / denom if denom > 1e-12 else 0.0
    warnings: list[str] = []
    if t <= 1e-6:
        t = float(np.max(np.linalg.norm(centres, axis=1)))
        warnings.append("The camera path does not circle a point ahead of the camera; it was projected onto "
                        f"an orbit sphere of radius {t:.3g} around the point that far ahead.")
    v = centres - np.array([0.0, 0.0, t])
    dist = np.linalg.norm(v, axis=1)
    if not warnings and float(np.max(np.abs(dist - t))) > SPHERE_TOLERANCE * t:
        warnings.append("The camera path is not an orbit around one point; it was projected onto the orbit "
                        f"sphere (radius {t:.3g}), so its changes of distance are ignored.")
    dist = np.maximum(dist, 1e-12)
    # OpenCV axes: y points down, so "up" is -y; the photo's camera sits at -z from the centre.
    elev = np.degrees(np.arcsin(np.clip(-v[:, 1] / dist, -1.0, 1.0)))
    azim = np.unwrap(np.arctan2(v[:, 0], -v[:, 2]))
    azim = np.degrees(azim - azim[0])
    return Orbit(tuple(float(base_elevation_deg + e) for e in elev), tuple(float(a) for a in azim),
                 "studio", tuple(warnings))
