"""Plotly figures for the dashboard: camera frustums in 3D and per-pair metric curves.

plotly.js ships inside gradio, so these render offline (no CDN), which matters behind an SSH
tunnel on a cluster node without internet.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from core.camera import CameraPath

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f",
           "#7c3aed", "#b45309", "#0f766e", "#1d4ed8")


def chain_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def camera_figure(path: CameraPath | None, width: int = 512, height: int = 320,
                  message: str = "", segment_starts: Sequence[int] = ()) -> go.Figure:
    """Frustums of every frame of `path` (relative to frame 0), coloured from blue to red.

    segment_starts: first frames of the 2nd, 3rd, ... segments of a chained long shot; each is
    marked (a black diamond labelled "segment k") where that segment's conditioning camera is.

    Axes are shown the way a viewer expects: x right, y up (the camera's -y), z forward, so a
    push-in goes into the screen and a crane-up goes up.
    """
    fig = go.Figure()
    if path is None:
        fig.add_annotation(text=message or "No camera path", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font=dict(size=14))
        fig.update_layout(height=340, margin=dict(l=0, r=0, t=10, b=0))
        return fig
    c2w = path.relative_c2w(0)
    K = path.K(width, height)
    centres = c2w[:, :3, 3]
    extent = float(np.ptp(centres, axis=0).max()) if len(centres) > 1 else 0.0
    size = max(extent * 0.18, 0.05)
    flip = np.diag([1.0, -1.0, 1.0])  # show y up
    n = path.num_frames
    xs, ys, zs, colors = [], [], [], []
    for i in range(n):
        fx, fy, cx, cy = K[i, 0, 0], K[i, 1, 1], K[i, 0, 2], K[i, 1, 2]
        corners_px = [(0, 0), (width, 0), (width, height), (0, height)]
        rays = np.array([[(u - cx) / fx, (v - cy) / fy, 1.0] for u, v in corners_px]) * size
        R, t = c2w[i, :3, :3], c2w[i, :3, 3]
        pts = (rays @ R.T + t) @ flip.T
        o = flip @ t
        seq = [o, pts[0], pts[1], o, pts[2], pts[3], o, pts[0], pts[3], pts[2], pts[1]]
        for p in seq:
            xs.append(p[0]); ys.append(p[1]); zs.append(p[2])
        xs.append(None); ys.append(None); zs.append(None)
        colors.extend([i] * (len(seq) + 1))
    fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", hoverinfo="skip",
                               line=dict(color=colors, colorscale="Bluered", width=3), name="frustums"))
    track = centres @ flip.T
    fig.add_trace(go.Scatter3d(x=track[:, 0], y=track[:, 1], z=track[:, 2], mode="markers+lines",
                               marker=dict(size=3, color=list(range(n)), colorscale="Bluered"),
                               line=dict(color="#555", width=2), name="camera centre",
                               text=[f"frame {i}" for i in range(n)], hoverinfo="text"))
    marks = [int(s) for s in segment_starts if 0 < int(s) < n]
    if marks:
        pts = track[marks]
        fig.add_trace(go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers+text",
                                   marker=dict(size=7, symbol="diamond", color="black"),
                                   text=[f"segment {k + 2}" for k in range(len(marks))], textposition="top center",
                                   hovertext=[f"segment {k + 2} starts at frame {f}" for k, f in enumerate(marks)],
                                   hoverinfo="text", name="segment boundaries"))
    span = max(extent, size * 3)
    mid = (track.max(0) + track.min(0)) / 2
    rng = [[m - span, m + span] for m in mid]
    fig.update_layout(
        # the eye stands far enough back that the axis titles stay inside the plot
        height=360, margin=dict(l=10, r=10, t=10, b=10), showlegend=False,
        scene=dict(xaxis=dict(title="x (right)", range=rng[0]), yaxis=dict(title="y (up)", range=rng[1]),
                   zaxis=dict(title="z (forward)", range=rng[2]), aspectmode="cube",
                   camera=dict(eye=dict(x=1.55, y=1.15, z=-2.05), up=dict(x=0, y=1, z=0))),
    )
    return fig


# metric key -> (plot title, y-axis title with units)
CURVES: dict[str, tuple[str, str]] = {
    "tpsnr": ("Temporal PSNR per frame pair (includes camera motion)", "tPSNR (dB)"),
    "tssim": ("Temporal SSIM per frame pair (includes camera motion)", "tSSIM (0-1)"),
    "tmse": ("Temporal MSE per frame pair (includes camera motion)", "tMSE (0-255 scale)"),
    "warp_psnr": ("Warped PSNR (motion-compensated)", "warped PSNR (dB)"),
    "warp_ssim": ("Warped SSIM (motion-compensated)", "warped SSIM (0-1)"),
    "warp_mae": ("Warped error (motion-compensated)", "MAE (0-255)"),
    "flicker": ("Flicker (brightness change motion does not explain)", "flicker (grey levels)"),
    "valid_fraction": ("Share of pixels with reliable flow", "valid fraction (0-1)"),
    "lap_var": ("Sharpness per frame (512x320 grid)", "Laplacian variance"),
    "grad_energy": ("Gradient energy per frame (512x320 grid)", "gradient energy (grey levels/px)²"),
    "noise_sigma": ("Residual noise per frame", "noise sigma (0-255)"),
}
QUALITY_PANELS = ("warp_psnr", "flicker", "lap_var", "noise_sigma")


def _series_of(m: Mapping[str, Any] | None, metric: str, variant: str) -> list:
    block = (m or {}).get(variant) or (m or {}).get("native") or {}
    series = block.get(metric) or {}
    return series.get("per_pair") or series.get("per_frame") or []


def metric_figure(metrics_by_chain: Mapping[str, Mapping[str, Any]], metric: str, variant: str = "native",
                  order: list[str] | None = None) -> go.Figure:
    """One line per chain: the metric of every consecutive frame pair (x = pair index) or of
    every frame (per-frame measures); y axis titled with units; hover shows chain and value."""
    title, ytitle = CURVES.get(metric, (metric, metric))
    fig = go.Figure()
    names = order or list(metrics_by_chain)
    for k, name in enumerate(names):
        m = metrics_by_chain.get(name)
        if not m:
            continue
        values = _series_of(m, metric, variant)
        fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=name,
                                 line=dict(color=chain_color(k), width=2), marker=dict(size=5),
                                 hovertemplate=f"{name}<br>%{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)), height=300,
        margin=dict(l=55, r=10, t=40, b=40), xaxis_title="frame pair (t, t+1)", yaxis_title=ytitle,
        legend=dict(orientation="h", y=-0.25), template="plotly_white",
    )
    if not names:
        fig.add_annotation(text="Generate to see the curves", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    return fig


def quality_figure(metrics_by_chain: Mapping[str, Mapping[str, Any]], variant: str = "native",
                   order: list[str] | None = None, panels: tuple[str, ...] = QUALITY_PANELS) -> go.Figure:
    """The motion-compensated and no-reference measures (core.consistency) as a 2x2 grid of
    per-pair / per-frame curves, one colour per chain (one legend entry per chain for all panels),
    y axes titled with units, hover values."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=[CURVES[p][0] for p in panels],
                        vertical_spacing=0.2, horizontal_spacing=0.12)
    names = order or list(metrics_by_chain)
    for i, metric in enumerate(panels):
        r, c = i // 2 + 1, i % 2 + 1
        per_frame = metric in ("lap_var", "grad_energy", "noise_sigma")
        for k, name in enumerate(names):
            values = _series_of(metrics_by_chain.get(name), metric, variant)
            if not values:
                continue
            fig.add_trace(go.Scatter(
                x=list(range(1 if not per_frame else 0, len(values) + (1 if not per_frame else 0))), y=values,
                mode="lines+markers", name=name, legendgroup=name, showlegend=i == 0,
                line=dict(color=chain_color(k), width=2), marker=dict(size=4),
                hovertemplate=f"{name}<br>%{{x}}: %{{y:.4g}}<extra>{CURVES[metric][1]}</extra>"), row=r, col=c)
        fig.update_yaxes(title_text=CURVES[metric][1], row=r, col=c)
        fig.update_xaxes(title_text="frame" if per_frame else "frame pair (t, t+1)", row=r, col=c)
    fig.update_layout(height=560, margin=dict(l=60, r=10, t=50, b=40), template="plotly_white",
                      legend=dict(orientation="h", y=-0.12))
    for ann in fig.layout.annotations:
        ann.font = dict(size=13)
    if not any(fig.data):
        fig.add_annotation(text="Generate to see the motion-compensated and no-reference measures",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


@functools.cache
def empty_metric_figures() -> tuple[go.Figure, go.Figure, go.Figure]:
    """The blank temporal PSNR, temporal SSIM and quality panels (built once, on the first page
    load rather than at server start; never mutated)."""
    return metric_figure({}, "tpsnr"), metric_figure({}, "tssim"), quality_figure({})
