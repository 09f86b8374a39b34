"""Paired statistics for studies: is a chain's difference from another chain real?

Every study video (one photo x one camera move) is made once and then post-processed by every
chain, so chains are compared **paired**, video by video: for chains A (e.g. "upscale") and B
(the baseline, e.g. "none") and a metric, the differences ``d_i = A_i - B_i`` over the videos
present in both give

* ``mean_diff``: the mean of d (same units as the metric);
* ``ci_low`` / ``ci_high``: a 95% bootstrap confidence interval of that mean: percentile method,
  `scipy.stats.bootstrap` with 2000 resamples and a fixed seed (re-running gives the same
  interval);
* ``p_value``: the two-sided Wilcoxon signed-rank test of d (`scipy.stats.wilcoxon`, zero
  differences dropped as in Wilcoxon's original method; exact distribution for small n, as
  scipy chooses). None when every difference is zero or fewer than two videos are paired.
* ``significant``: p < ``ALPHA`` (0.05). With n videos the smallest two-sided exact p is
  2 / 2^n, so at least 6 paired videos are needed for any difference to be significant.

Metrics carry a direction (`METRICS`): "higher" or "lower" is better, or None where neither is
(consecutive-frame PSNR/SSIM include camera motion: steadier is not better). The ranking table
orders chains by their mean difference from the baseline in the better direction and marks the
significant ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

ALPHA = 0.05
N_RESAMPLES = 2000
SEED = 12345

# CSV column -> (label, better direction); the study CSV's per-video means
METRICS: dict[str, tuple[str, str | None]] = {
    "warp_psnr_mean": ("warped PSNR (dB)", "higher"),
    "warp_ssim_mean": ("warped SSIM", "higher"),
    "warp_mae_mean": ("warped error (MAE, 0-255)", "lower"),
    "flicker_mean": ("flicker (grey levels)", "lower"),
    "common_warp_psnr_mean": ("warped PSNR at generator size (dB)", "higher"),
    "common_flicker_mean": ("flicker at generator size (grey levels)", "lower"),
    "lap_var_mean": ("sharpness: Laplacian variance (512x320 grid)", "higher"),
    "grad_energy_mean": ("sharpness: gradient energy (512x320 grid)", "higher"),
    "noise_sigma_mean": ("noise sigma (0-255)", "lower"),
    "tpsnr_mean": ("tPSNR, includes camera motion (dB)", None),
    "tssim_mean": ("tSSIM, includes camera motion", None),
    "common_tpsnr_mean": ("tPSNR at generator size, includes camera motion (dB)", None),
    "fidelity_psnr": ("fidelity PSNR: frame 0 vs photo (dB)", "higher"),
}


@dataclass(frozen=True)
class PairedStat:
    """Chain `chain` minus chain `baseline` on `metric` over `n` paired videos (see the module
    docstring). Floats are None when undefined (no pairs; p when all differences are zero)."""

    metric: str
    chain: str
    baseline: str
    n: int
    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool

    def as_row(self) -> dict[str, Any]:
        return {"metric": self.metric, "chain": self.chain, "baseline": self.baseline, "n": self.n,
                "mean_diff": self.mean_diff, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_value": self.p_value, "significant": self.significant}


def bootstrap_ci(diffs: np.ndarray, *, seed: int = SEED, n_resamples: int = N_RESAMPLES,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of (n,) diffs with a seeded generator."""
    from scipy import stats

    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2 or np.all(d == d[0]):
        return float(d.mean()), float(d.mean())  # no spread: the interval is the point
    res = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=level, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def wilcoxon_p(diffs: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p of (n,) diffs; None when it is undefined."""
    from scipy import stats

    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2 or np.all(d == 0):
        return None
    return float(stats.wilcoxon(d).pvalue)


def paired(a: Sequence[float], b: Sequence[float], *, metric: str = "", chain: str = "a", baseline: str = "b",
           seed: int = SEED) -> PairedStat:
    """`PairedStat` of a - b for two equal-length sequences of per-video values (pairs with a
    missing value on either side are dropped)."""
    x = np.asarray([np.nan if v is None else v for v in a], dtype=np.float64)
    y = np.asarray([np.nan if v is None else v for v in b], dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples need equal lengths, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    if d.size == 0:
        return PairedStat(metric, chain, baseline, 0, None, None, None, None, False)
    lo, hi = bootstrap_ci(d, seed=seed)
    p = wilcoxon_p(d)
    return PairedStat(metric, chain, baseline, int(d.size), float(d.mean()), lo, hi, p,
                      p is not None and p < ALPHA)


def _number(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def compare_chains(rows: Sequence[Mapping[str, Any]], *, baseline: str = "none",
                   pairs: Sequence[tuple[str, str]] = (), metrics: Sequence[str] | None = None,
                   seed: int = SEED) -> list[PairedStat]:
    """Paired statistics over a study's CSV rows (one per video and chain, keyed by photo and
    path): every chain against `baseline` (when that chain is present), then each (chain,
    other) in `pairs`, for every metric column present. Order: metric, then chain."""
    metrics = [m for m in (metrics or METRICS) if any(_number(r.get(m)) is not None for r in rows)]
    chains = list(dict.fromkeys(str(r["chain"]) for r in rows))
    table: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for r in rows:
        table.setdefault((str(r["photo"]), str(r["path"])), {})[str(r["chain"])] = r
    videos = list(table)
    todo: list[tuple[str, str]] = []
    if baseline in chains:
        todo += [(c, baseline) for c in chains if c != baseline]
    todo += [(a, b) for a, b in pairs if a in chains and b in chains and a != b and (a, b) not in todo]
    out = []
    for metric in metrics:
        for chain, base in todo:
            xa = [_number((table[v].get(chain) or {}).get(metric)) for v in videos]
            xb = [_number((table[v].get(base) or {}).get(metric)) for v in videos]
            out.append(paired(xa, xb, metric=metric, chain=chain, baseline=base, seed=seed))
    return out


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:+.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:+.{digits}f}"


def ranking_markdown(stats: Sequence[PairedStat]) -> str:
    """One table per metric: chains ranked by mean difference from their baseline (better
    direction first; metrics without a direction keep the chain order), with the 95% CI, the
    Wilcoxon p and a mark on significant differences."""
    if not stats:
        return "No paired videos to compare yet.\n"
    lines = [f"Paired differences (chain − baseline, per video), 95% bootstrap CI (seeded, {N_RESAMPLES} "
             f"resamples), two-sided Wilcoxon signed-rank p; **bold** = significant at p < {ALPHA}.", ""]
    for metric in dict.fromkeys(s.metric for s in stats):
        label, better = METRICS.get(metric, (metric, None))
        sel = [s for s in stats if s.metric == metric]
        if better is not None:
            sign = 1.0 if better == "higher" else -1.0
            sel.sort(key=lambda s: -np.inf if s.mean_diff is None else -sign * s.mean_diff)
        note = {"higher": "higher is better", "lower": "lower is better",
                None: "no better direction: shows steadiness and camera motion together"}[better]
        lines += [f"**{label}** ({note})", "", "| rank | chain | vs | n | mean diff | 95% CI | p |",
                  "|---|---|---|---|---|---|---|"]
        for k, s in enumerate(sel, 1):
            p = "n/a" if s.p_value is None else f"{s.p_value:.3g}"
            diff = _fmt(s.mean_diff)
            ci = "n/a" if s.ci_low is None else f"[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]"
            if s.significant:
                diff, p = f"**{diff}**", f"**{p}** ✱"
            rank = str(k) if better is not None else "–"
            lines.append(f"| {rank} | {s.chain} | {s.baseline} | {s.n} | {diff} | {ci} | {p} |")
        lines.append("")
    return "\n".join(lines)


def paired_figure(stats: Sequence[PairedStat], metric: str):
    """Plotly: one point per (chain vs baseline) with its 95% CI as an error bar, significant
    ones filled; a zero line. y axis in the metric's units."""
    import plotly.graph_objects as go

    label, better = METRICS.get(metric, (metric, None))
    sel = [s for s in stats if s.metric == metric and s.mean_diff is not None]
    names = [f"{s.chain} − {s.baseline}" for s in sel]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=names, y=[s.mean_diff for s in sel], mode="markers",
        error_y=dict(type="data", symmetric=False, array=[s.ci_high - s.mean_diff for s in sel],
                     arrayminus=[s.mean_diff - s.ci_low for s in sel]),
        marker=dict(size=11, symbol=["circle" if s.significant else "circle-open" for s in sel],
                    color="#2563eb", line=dict(width=2)),
        customdata=[[s.n, s.ci_low, s.ci_high, s.p_value if s.p_value is not None else float("nan")] for s in sel],
        hovertemplate="%{x}<br>mean diff %{y:.4g}<br>95% CI [%{customdata[1]:.4g}, %{customdata[2]:.4g}]"
                      "<br>p = %{customdata[3]:.3g}, n = %{customdata[0]}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="#888", dash="dot"))
    hint = {"higher": " (above 0: better)", "lower": " (below 0: better)", None: ""}[better]
    fig.update_layout(title=dict(text=f"Paired difference: {label}{hint}", font=dict(size=14)), height=360,
                      showlegend=False, template="plotly_white", margin=dict(l=60, r=10, t=40, b=60),
                      xaxis_title="chain − baseline", yaxis_title=f"difference in {label}")
    return fig
