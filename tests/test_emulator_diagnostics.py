"""Emulator diagnostics (physgen.diagnostics.emulator, .emulator_points, .minkowski, .emulator_plots) against oracles: identical sets,
independent sets of one distribution (χ² ~ dof), Gaussian random fields (analytic Minkowski functionals), a
10% amplitude change, Poisson point sets (g = 1)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from physgen.diagnostics.emulator import compare_fields, mean_difference_chi2, power_spectra
from physgen.diagnostics.emulator_points import (
    compare_point_sets,
    count_ks_test,
    pair_correlation,
    pair_correlation_chi2,
)
from physgen.diagnostics.emulator_plots import field_figures, point_set_figures
from physgen.diagnostics.minkowski import gaussian_minkowski, minkowski_functionals


def grf(rng, n_fields: int, n: int, smoothing: float) -> tuple[np.ndarray, float, float]:
    """Gaussian random fields (white noise smoothed by exp(-k² R² / 2), pixel units) and their exact σ0, σ1."""
    k = 2 * np.pi * np.fft.fftfreq(n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    g = np.exp(-k2 * smoothing**2 / 2)
    u = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n_fields, n, n))) * g).real
    return u, math.sqrt((g**2).sum() / n**2), math.sqrt((k2 * g**2).sum() / n**2)


def independent_spectra(rng, n_fields: int, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """P(k) rows of two independent sets of n_fields Gaussian random fields (n x n) of one distribution."""
    a, _, _ = grf(rng, n_fields, n, 1.0)
    b, _, _ = grf(rng, n_fields, n, 1.0)
    return power_spectra(a, 100.0)[1], power_spectra(b, 100.0)[1]


def test_power_spectra_parseval_and_shapes():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((3, 16, 16))
    k, P, modes = power_spectra(f, 64.0)
    assert k.shape == (8,) and P.shape == (3, 8) and modes.shape == (8,)
    assert np.all(np.diff(k) > 0)
    # white noise of unit variance: E[P] = V / N_c = cell area
    assert abs(P.mean() / (64.0 / 16) ** 2 - 1) < 0.1
    with pytest.raises(ValueError, match="square 2D fields"):
        power_spectra(rng.standard_normal((3, 16, 8)), 64.0)


def test_identical_sets_give_ratio_one_and_zero_chi2():
    rng = np.random.default_rng(1)
    f, _, _ = grf(rng, 40, 16, 1.5)
    m = compare_fields(f, f.copy(), box_size=100.0)
    assert np.allclose(m["power_spectrum"]["ratio"], 1.0) and m["power_spectrum"]["chi2"] == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(m["variance"]["ratio"], 1.0) and m["correlation"]["max_abs_offdiag_diff"] < 1e-12
    for part in (m["pdf"], m["peaks"], *(m["minkowski"][q] for q in ("area", "perimeter", "euler"))):
        assert part["chi2"] == pytest.approx(0.0, abs=1e-12)
    json.dumps(m)  # JSON-ready


def test_chi2_of_independent_sets_follows_dof():
    """Two independent sets of one distribution: χ²/dof of the mean P(k) difference averages 1 (Hartlap)."""
    rng = np.random.default_rng(2)
    values, pvals = [], []
    for _ in range(120):
        r = mean_difference_chi2(*independent_spectra(rng, 60))
        values.append(r["chi2_dof"])
        pvals.append(r["p_value"])
    assert 0.85 < np.mean(values) < 1.15
    assert 0.01 < np.mean(np.asarray(pvals) < 0.05) < 0.13


def test_minkowski_functionals_of_a_gaussian_field_match_the_analytic_expectation():
    rng = np.random.default_rng(3)
    u, s0, s1 = grf(rng, 40, 64, 3.0)
    nu = np.linspace(-2.5, 2.5, 11)
    m = minkowski_functionals(u, nu, mean=0.0, std=s0)
    g = gaussian_minkowski(nu, s0, s1)
    for key in ("area", "perimeter", "euler"):
        mean, se = m[key].mean(0), m[key].std(0, ddof=1) / math.sqrt(len(u))
        scale = np.abs(g[key]).max()
        assert np.all(np.abs(mean - g[key]) < 4 * se + 0.03 * scale), key
    # the Euler characteristic changes sign at ν = 0 and the perimeter peaks there
    assert m["euler"].mean(0)[2] < 0 < m["euler"].mean(0)[-3]
    assert np.argmax(m["perimeter"].mean(0)) == 5


def test_a_ten_percent_amplitude_change_is_detected():
    rng = np.random.default_rng(4)
    a, _, _ = grf(rng, 150, 32, 1.5)
    b, _, _ = grf(rng, 150, 32, 1.5)
    same = compare_fields(a, b, box_size=128.0)
    changed = compare_fields(a, math.sqrt(1.1) * b, box_size=128.0)
    assert same["power_spectrum"]["p_value"] > 1e-3 and changed["power_spectrum"]["p_value"] < 1e-6
    ratio = np.asarray(changed["power_spectrum"]["ratio"])
    assert np.all(np.abs(ratio - 1.1) < 5 * np.asarray(changed["power_spectrum"]["ratio_err"]) + 1e-9)
    assert changed["pdf"]["chi2_dof"] > 3 * max(same["pdf"]["chi2_dof"], 1.0)
    assert changed["peaks"]["chi2_dof"] > 3 * max(same["peaks"]["chi2_dof"], 1.0)
    assert changed["minkowski"]["area"]["chi2_dof"] > 3 * max(same["minkowski"]["area"]["chi2_dof"], 1.0)


def test_variance_and_correlation_pulls_are_about_one_for_one_distribution():
    """Independent sets of one distribution: the RMS pulls of the P(k) variance ratio and of the correlation
    differences average about 1 (their errors are right); a ±30% field-to-field amplitude scatter is far out."""
    from physgen.diagnostics.emulator import correlation_comparison, variance_ratio

    rng = np.random.default_rng(5)
    v_pulls, c_pulls = [], []
    for _ in range(40):
        Pa, Pb = independent_spectra(rng, 200)
        v = variance_ratio(Pa, Pb)
        v_pulls += list((np.asarray(v["ratio"]) - 1) / np.asarray(v["err"]))
        c_pulls.append(correlation_comparison(Pa, Pb)["rms_pull"])
    assert 0.8 < np.sqrt(np.mean(np.square(v_pulls))) < 1.25
    assert 0.8 < np.mean(c_pulls) < 1.25
    a, _, _ = grf(rng, 200, 32, 1.5)
    b, _, _ = grf(rng, 200, 32, 1.5)
    amp = np.where(np.arange(200) % 2 == 0, 1.3, 1 / 1.3)[:, None, None]  # field-to-field amplitude scatter
    same, wider = compare_fields(a, b, box_size=128.0), compare_fields(a, amp * b, box_size=128.0)
    assert same["variance"]["rms_pull"] < 2 and wider["variance"]["rms_pull"] > 4
    assert wider["correlation"]["rms_pull"] > 3 * same["correlation"]["rms_pull"]


def _poisson_sets(rng, n_sets: int, mean: float, n_max: int, box: float = 1.0) -> np.ndarray:
    out = np.zeros((n_sets, n_max, 3))
    for i in range(n_sets):
        m = min(rng.poisson(mean), n_max)
        out[i, :m, :2] = rng.uniform(0, box, (m, 2))
        out[i, :m, 2] = 1.0
    return out


def test_pair_correlation_of_poisson_sets_is_one_and_counts_pass_ks():
    rng = np.random.default_rng(5)
    a, b = _poisson_sets(rng, 60, 200, 300), _poisson_sets(rng, 60, 200, 300)
    edges = np.linspace(0.01, 0.3, 9)
    est = pair_correlation(a, 1.0, edges, intensity=200.0)
    chi = pair_correlation_chi2(est, lambda r: np.ones_like(r))
    assert chi["dof"] == 8 and chi["chi2_dof"] < 4
    est_n = pair_correlation(a, 1.0, edges)  # RR from N (N - 1): no common amplitude scatter
    assert np.all(np.abs(np.asarray(est_n["g"]) - 1) < 5 * np.asarray(est_n["err"]))
    assert count_ks_test(a, b)["p_value"] > 0.01
    assert count_ks_test(a, _poisson_sets(rng, 60, 240, 300))["p_value"] < 0.01
    m = compare_point_sets(a, b, box_size=1.0, r_bins=edges, g_true=lambda r: np.ones_like(r))
    assert set(m["pair_correlation"]) >= {"sim", "emu", "emu_vs_sim", "sim_vs_true", "emu_vs_true"}
    json.dumps(m)
    with pytest.raises(ValueError, match="box_size/2"):
        pair_correlation(a, 1.0, [0.1, 0.6])


def test_figures_are_png_bytes():
    rng = np.random.default_rng(6)
    a, _, _ = grf(rng, 30, 16, 1.5)
    b, _, _ = grf(rng, 30, 16, 1.5)
    figs = field_figures(compare_fields(a, b, box_size=64.0, k_range=(0.1, None)))
    assert len(figs) == 5 and all(v[:8] == b"\x89PNG\r\n\x1a\n" for v in figs.values())
    pts = _poisson_sets(rng, 10, 50, 80)
    pm = compare_point_sets(pts, pts, box_size=1.0, r_bins=np.linspace(0.02, 0.3, 6))
    assert next(iter(point_set_figures(pm).values()))[:4] == b"\x89PNG"


def test_bad_inputs_are_named():
    rng = np.random.default_rng(7)
    a, _, _ = grf(rng, 10, 16, 1.0)
    with pytest.raises(ValueError, match="one size"):
        compare_fields(a, a[:, :8, :8], box_size=10.0)
    with pytest.raises(ValueError, match="no k bin"):
        compare_fields(a, a, box_size=10.0, k_range=(100.0, None))
    with pytest.raises(ValueError, match="NaN"):
        compare_fields(a, np.full_like(a, np.nan), box_size=10.0)
    with pytest.raises(ValueError, match="more than"):
        mean_difference_chi2(rng.standard_normal((5, 8)), rng.standard_normal((5, 8)))
