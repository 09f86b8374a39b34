"""Plotly figures for the dashboard: camera frustums in 3D and per-pair metric curves.

plotly.js ships inside gradio, so these render offline (no CDN), which matters behind an SSH
tunnel on a cluster node without internet.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import plotly.graph_objects as go

from core.camera import CameraPath

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f",
           "#7c3aed", "#b45309", "#0f766e", "#1d4ed8")


def chain_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def camera_figure(path: CameraPath | None, width: int = 512, height: int = 320,
                  message: str = "") -> go.Figure:
    """Frustums of every frame of `path` (relative to frame 0), coloured from blue to red.

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


def metric_figure(metrics_by_chain: Mapping[str, Mapping[str, Any]], metric: str, variant: str = "native",
                  order: list[str] | None = None) -> go.Figure:
    """One line per chain: the metric of every consecutive frame pair (x = pair index)."""
    titles = {"tpsnr": "Temporal PSNR (dB) per frame pair", "tssim": "Temporal SSIM per frame pair",
              "tmse": "Temporal MSE per frame pair"}
    fig = go.Figure()
    names = order or list(metrics_by_chain)
    for k, name in enumerate(names):
        m = metrics_by_chain.get(name)
        if not m:
            continue
        block = m.get(variant) or m.get("native")
        series = (block or {}).get(metric) or {}
        values = series.get("per_pair") or []
        fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=name,
                                 line=dict(color=chain_color(k), width=2), marker=dict(size=5)))
    fig.update_layout(
        title=dict(text=titles.get(metric, metric), font=dict(size=14)), height=300,
        margin=dict(l=40, r=10, t=40, b=40), xaxis_title="frame pair (t, t+1)",
        legend=dict(orientation="h", y=-0.25), template="plotly_white",
    )
    if not names:
        fig.add_annotation(text="Generate to see the curves", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    return fig
