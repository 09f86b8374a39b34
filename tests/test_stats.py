"""Study statistics against scipy's own functions on a fixed table."""

from __future__ import annotations

import numpy as np
import pytest

from core import stats as S

scipy_stats = pytest.importorskip("scipy.stats")

# 8 videos (4 photos x 2 moves), three chains; "upscale" is clearly sharper, "denoise" is noise
PHOTOS = ["p1", "p2", "p3", "p4"]
MOVES = ["push-in", "pan-left"]
NONE = [10.0, 12.5, 9.0, 11.0, 13.0, 8.5, 10.5, 12.0]
UPSCALE = [14.0, 15.0, 13.5, 16.0, 15.5, 12.0, 14.5, 17.0]
DENOISE = [10.2, 12.0, 9.5, 10.7, 13.4, 8.1, 10.9, 11.8]


def _rows():
    rows = []
    for k, (photo, move) in enumerate((p, m) for p in PHOTOS for m in MOVES):
        for chain, vals in (("none", NONE), ("upscale", UPSCALE), ("denoise", DENOISE)):
            rows.append({"photo": photo, "path": move, "chain": chain, "lap_var_mean": vals[k],
                         "flicker_mean": str(vals[k] / 10)})  # CSV text values are read too
    return rows


def test_paired_matches_scipy():
    d = np.array(UPSCALE) - np.array(NONE)
    s = S.paired(UPSCALE, NONE, metric="lap_var_mean", chain="upscale", baseline="none")
    assert s.n == 8 and s.mean_diff == pytest.approx(d.mean(), rel=1e-12)
    assert s.p_value == pytest.approx(scipy_stats.wilcoxon(d).pvalue, rel=1e-12)
    assert s.p_value == pytest.approx(2 / 2**8)  # every difference positive: the smallest exact p
    ref = scipy_stats.bootstrap((d,), np.mean, n_resamples=S.N_RESAMPLES, method="percentile",
                                rng=np.random.default_rng(S.SEED)).confidence_interval
    assert (s.ci_low, s.ci_high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert s.ci_low < s.mean_diff < s.ci_high and s.significant


def test_bootstrap_is_seeded():
    d = np.array(DENOISE) - np.array(NONE)
    assert S.bootstrap_ci(d) == S.bootstrap_ci(d)
    assert S.bootstrap_ci(d, seed=1) != S.bootstrap_ci(d, seed=2)


def test_compare_chains_and_ranking():
    stats = S.compare_chains(_rows(), pairs=[("upscale", "denoise")])
    keys = [(s.metric, s.chain, s.baseline) for s in stats]
    assert keys == [(m, c, b) for m in ("flicker_mean", "lap_var_mean")
                    for c, b in (("upscale", "none"), ("denoise", "none"), ("upscale", "denoise"))]
    den = next(s for s in stats if s.metric == "lap_var_mean" and s.chain == "denoise")
    d = np.array(DENOISE) - np.array(NONE)
    assert den.p_value == pytest.approx(scipy_stats.wilcoxon(d).pvalue, rel=1e-12)
    assert not den.significant and den.ci_low < 0 < den.ci_high
    md = S.ranking_markdown(stats)
    block = md[md.index("sharpness: Laplacian"):]
    # higher sharpness is better: upscale ranks first, marked significant
    assert block.index("| 1 | upscale | none |") < block.index("| 3 | denoise | none |")
    assert "✱" in block.split("\n\n")[1].splitlines()[2]
    flick = md[md.index("flicker"):md.index("sharpness")]
    assert "| 1 | denoise | none |" in flick  # lower flicker is better


def test_missing_values_are_dropped_pairwise():
    s = S.paired([1.0, None, 3.0, 5.0], [0.0, 2.0, None, 4.0])
    assert s.n == 2 and s.mean_diff == pytest.approx(1.0) and s.p_value == pytest.approx(
        scipy_stats.wilcoxon([1.0, 1.0]).pvalue)
    empty = S.paired([None], [1.0])
    assert empty.n == 0 and empty.mean_diff is None and not empty.significant


def test_paired_figure_has_error_bars():
    stats = S.compare_chains(_rows())
    fig = S.paired_figure(stats, "lap_var_mean")
    tr = fig.data[0]
    assert list(tr.x) == ["upscale − none", "denoise − none"]
    assert fig.layout.yaxis.title.text.startswith("difference in")
    up = next(s for s in stats if s.metric == "lap_var_mean" and s.chain == "upscale")
    assert tr.error_y.array[0] == pytest.approx(up.ci_high - up.mean_diff)
