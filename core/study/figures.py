"""Plotly figures of a study: a box plot per metric (chains on x, one point per video) and the
paired-difference plots, and plots.html, which holds them all with plotly.js inlined.

Why these are here and not in ui/: plots.html is a report the CLI (`python -m core study`) and
the cluster merge (`collect`) write with no dashboard at all, and core/ may not import ui/
(which imports gradio). The dashboard's study tab draws the same figures from here. plotly is
imported only when a figure is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..fileio import atomic_write_bytes

# Box plots: CSV column -> title.
PLOT_METRICS: dict[str, str] = {
    "warp_psnr_mean": "Warped PSNR (dB, motion-compensated), own size",
    "warp_mae_mean": "Warped error (MAE, 0-255, motion-compensated), own size",
    "flicker_mean": "Flicker (grey levels, motion-compensated), own size",
    "common_warp_psnr_mean": "Warped PSNR (dB), generator's size",
    "common_flicker_mean": "Flicker (grey levels), generator's size",
    "lap_var_mean": "Sharpness: Laplacian variance on the 512x320 grid",
    "grad_energy_mean": "Sharpness: gradient energy on the 512x320 grid",
    "noise_sigma_mean": "Residual noise sigma (0-255, wavelet MAD)",
    "tpsnr_mean": "Temporal PSNR (dB, includes camera motion), own size",
    "tssim_mean": "Temporal SSIM (includes camera motion), own size",
    "common_tpsnr_mean": "Temporal PSNR (dB, includes camera motion), generator's size",
    "common_tssim_mean": "Temporal SSIM (includes camera motion), generator's size",
    "study_tpsnr_mean": "Temporal PSNR (dB), UvA study definition",
    "study_tssim_mean": "Temporal SSIM, UvA study definition",
    "tmse_mean": "Temporal MSE (0-255 scale, includes camera motion)",
    "sharpness_mean": "Sharpness (variance of the Laplacian)",
    "brightness_mean": "Brightness (mean grey level)",
    "fidelity_psnr": "Fidelity PSNR (dB): frame 0 vs the photo",
    "fidelity_ssim": "Fidelity SSIM: frame 0 vs the photo",
}
# Adherence fields that are bookkeeping (or a duplicate in other units), not scores worth a plot.
_ADHERENCE_NOT_PLOTTED = {"available", "frames", "seconds", "RotErr"}
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f")


def paired_figures(paired: Sequence[Any]) -> dict[str, Any]:
    """Paired-difference plots ("paired:" + CSV column -> Figure) of core.stats results."""
    from .. import stats as statslib

    return {f"paired:{m}": statslib.paired_figure(paired, m) for m in dict.fromkeys(st.metric for st in paired)
            if any(st.metric == m and st.mean_diff is not None for st in paired)}


def box_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One plotly box plot per metric (PLOT_METRICS plus adherence_* columns), chains on x,
    one point per video (hover: photo / move)."""
    import plotly.graph_objects as go

    chains = list(dict.fromkeys(r["chain"] for r in rows))
    metrics = dict(PLOT_METRICS)
    for k in sorted({k for r in rows for k in r if k.startswith("adherence_")}):
        name = k[len("adherence_"):]
        if name not in _ADHERENCE_NOT_PLOTTED:
            metrics[k] = "Camera adherence: " + name.replace("_", " ")
    figs = {}
    for col, title in metrics.items():
        if not any(isinstance(r.get(col), (int, float)) for r in rows):
            continue
        fig = go.Figure()
        for k, chain in enumerate(chains):
            sel = [r for r in rows if r["chain"] == chain and isinstance(r.get(col), (int, float))]
            fig.add_trace(go.Box(
                y=[r[col] for r in sel], name=chain, boxpoints="all", jitter=0.4, pointpos=0,
                text=[f"{r['photo']} / {r['path']}" for r in sel], marker=dict(color=PALETTE[k % len(PALETTE)]),
                hovertemplate="%{text}<br>%{y:.4g}<extra>" + chain + "</extra>"))
        fig.update_layout(title=dict(text=title, font=dict(size=14)), height=360, showlegend=False,
                          margin=dict(l=60, r=10, t=40, b=40), template="plotly_white", xaxis_title="chain",
                          yaxis_title=title.split(",")[0])
        figs[col] = fig
    return figs


def write_plots_html(rows: Sequence[Mapping[str, Any]], path: Path, *, title: str = "Study",
                     stats: Sequence[Any] = ()) -> Path:
    """Every box plot (and paired-difference plot of `stats`) in one standalone HTML file;
    plotly.js is inlined once, so it opens offline."""
    import html

    figs = {**box_figures(rows), **paired_figures(stats)}
    parts = []
    for i, fig in enumerate(figs.values()):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    doc = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(title) +
           "</title></head><body style=\"font-family:sans-serif;max-width:1100px;margin:auto\">\n<h1>" +
           html.escape(title) + "</h1>\n" + "\n".join(parts) + "\n</body></html>\n")
    atomic_write_bytes(path, doc.encode("utf-8"))
    return path
