"""Oracles of the FFT bispectrum estimator (physgen.diagnostics.bispectrum): a brute-force sum over mode pairs,
Gaussian fields (B = 0 within errors), local quadratic fields (Q = 2b), and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physgen.diagnostics.bispectrum import bispectrum, compare_bispectra, reduced_bispectrum, triangle_configurations
from physgen.diagnostics.emulator import power_spectra


def brute_force(
    field: np.ndarray, box: float, edges: np.ndarray, triangles: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """B over every ordered pair (k1, k2) of grid modes with k3 = -(k1 + k2) mod n, straight from the definition
    V² / N_c³ <δ_k1 δ_k2 δ_k3>; returns (B (T,), triangle counts (T,))."""
    n, dim = field.shape[0], field.ndim
    dk = np.fft.fftn(field).reshape(-1)
    m = np.stack(np.meshgrid(*([np.fft.fftfreq(n, 1.0 / n).astype(int)] * dim), indexing="ij")).reshape(dim, -1)
    kmag = (2 * math.pi / box) * np.sqrt((m**2).sum(0))
    shell = np.digitize(kmag, edges) - 1
    shell[(kmag == 0) | (shell >= len(edges) - 1)] = -1
    flat = np.arange(n**dim).reshape((n,) * dim)
    B, N = [], []
    for i, j, k in triangles:
        a, b = np.flatnonzero(shell == i), np.flatnonzero(shell == j)
        m3 = (-(m[:, a, None] + m[:, None, b])) % n  # (dim, |a|, |b|)
        c = flat[tuple(m3)]
        ok = shell[c] == k
        prod = (dk[a, None] * dk[None, b] * dk[c])[ok]
        B.append(prod.sum().real / ok.sum() * box ** (2 * dim) / n ** (3 * dim))
        N.append(ok.sum())
    return np.array(B), np.array(N)


def gaussian_fields(n_fields: int, n: int, dim: int, box: float, power, rng) -> np.ndarray:
    """Periodic Gaussian fields with grid spectrum P(k): white noise filtered by sqrt(P N_c / V)."""
    kf = 2 * math.pi / box
    axes = [np.fft.fftfreq(n, 1.0 / n)] * (dim - 1) + [np.fft.rfftfreq(n, 1.0 / n)]
    k = kf * np.sqrt(sum(a**2 for a in np.meshgrid(*axes, indexing="ij")))
    amp = np.sqrt(np.where(k > 0, power(np.where(k > 0, k, 1.0)), 0.0) * n**dim / box**dim)
    w = rng.standard_normal((n_fields,) + (n,) * dim)
    return np.fft.irfftn(
        np.fft.rfftn(w, axes=tuple(range(1, dim + 1))) * amp, s=(n,) * dim, axes=tuple(range(1, dim + 1))
    )


def test_equals_brute_force_2d_and_3d():
    rng = np.random.default_rng(1)
    for dim, n, box, dk in ((2, 8, 10.0, None), (2, 12, 7.0, None), (3, 6, 10.0, None), (3, 8, 5.0, 0.75)):
        f = rng.standard_normal((3,) + (n,) * dim) ** 2  # skewed: B far from 0
        kf = 2 * math.pi / box
        bs = bispectrum(f, box, dim=dim, k_max=math.pi * n / box / 2, dk=None if dk is None else dk * kf)
        assert len(bs.triangles) >= 1
        for r in range(len(f)):
            B, N = brute_force(f[r], box, bs.edges, bs.triangles)
            np.testing.assert_allclose(bs.B[r], B, rtol=1e-9)
            np.testing.assert_array_equal(bs.counts, N)
        if dim == 2:  # the shell P is power_spectra's on the same bins
            _, P, _ = power_spectra(f, box, bins=None)
            np.testing.assert_allclose(bs.P, P[:, : len(bs.k)], rtol=1e-10)
        else:  # and simulators.cosmology.fourier.power_spectrum's on the same edges
            import torch

            from simulators.cosmology.fourier import power_spectrum

            _, P, _ = power_spectrum(torch.from_numpy(f), box, torch.from_numpy(bs.edges), dim=3)
            np.testing.assert_allclose(bs.P, P.numpy(), rtol=1e-10)
    x = rng.standard_normal((4, 16, 16)) ** 2  # a channel axis of 1 is dropped, in 2D as in 3D
    np.testing.assert_array_equal(bispectrum(x[:, None], 10.0).B, bispectrum(x, 10.0).B)
    assert bispectrum(rng.standard_normal((2, 1, 8, 8, 8)), 10.0, k_max=math.pi * 8 / 10.0 / 2).P.shape[0] == 2
    two = bispectrum(rng.standard_normal((2, 12, 12)) ** 2, 7.0, k_max=math.pi * 12 / 7.0 / 2)
    assert len(two.triangles) > 3


def test_triangle_kinds():
    k = np.array([1.0, 2.0, 3.0, 4.0])
    allt = triangle_configurations(k, "all")
    assert all(a <= b <= c and k[c] <= k[a] + k[b] + 1e-9 for a, b, c in allt)
    assert [tuple(t) for t in triangle_configurations(k, "equilateral")] == [(i, i, i) for i in range(4)]
    assert [t[2] for t in triangle_configurations(k, ("scan", 1, 1))] == [0, 1, 2, 3]  # k3 from |k1-k2| to k1+k2
    assert [t[2] for t in triangle_configurations(k, ("scan", 0, 2))] == [1, 2, 3]


def _hotelling(rows: np.ndarray) -> float:
    """χ²/dof of the mean of rows against 0, the covariance from the rows with Hartlap's factor."""
    n, p = rows.shape
    m = rows.mean(0)
    chi2 = n * m @ np.linalg.solve(np.cov(rows, rowvar=False), m) * (n - p - 2) / (n - 1)
    return chi2 / p


def test_gaussian_field_has_zero_bispectrum():
    rng = np.random.default_rng(2)
    power = lambda k: 50.0 * k**-1.5  # noqa: E731
    values = []
    for _ in range(12):  # χ²/dof of mean B against 0, 12 independent sets of 200 fields
        f = gaussian_fields(200, 32, 2, 100.0, power, rng)
        values.append(_hotelling(bispectrum(f, 100.0).B))
    assert 0.7 < np.mean(values) < 1.3, values
    # and two Gaussian sets compared through compare_bispectra: χ²/dof ~ 1
    a, b = gaussian_fields(300, 32, 2, 100.0, power, rng), gaussian_fields(300, 32, 2, 100.0, power, rng)
    m = compare_bispectra(a, b, box_size=100.0)
    assert m["dof"] == len(m["triangles"]) == 9  # shells 1, 2, 3 k_f up to k_Nyquist / 4 = 4 k_f
    assert m["p_value"] > 1e-3
    quadratic = b + 0.05 * (b**2 - (b**2).mean())  # same P(k) to 1%, Q = 0.1 / σ_g: found
    assert compare_bispectra(a, quadratic, box_size=100.0)["p_value"] < 1e-6


def _expected_q(b: float, n: int, dim: int, box: float, power, bs) -> np.ndarray:
    """2b Σ_triangles [P1 P2 + P2 P3 + P3 P1] / N_ijk / (P̄_i P̄_j + ...), the exact binned tree-level value
    (the triangle sums by the FFT identity the brute-force test checks)."""
    axes = [np.fft.fftfreq(n, 1.0 / n)] * (dim - 1) + [np.fft.rfftfreq(n, 1.0 / n)]
    k = (2 * math.pi / box) * np.sqrt(sum(a**2 for a in np.meshgrid(*axes, indexing="ij")))
    shell = np.digitize(k, bs.edges) - 1
    masks = np.stack([(shell == s) & (k > 0) for s in range(len(bs.k))]).astype(float)
    pk = np.where(k > 0, power(np.where(k > 0, k, 1.0)), 0.0)
    ax = tuple(range(-dim, 0))
    J = np.fft.irfftn(masks, s=(n,) * dim, axes=ax).reshape(len(bs.k), -1)
    JP = np.fft.irfftn(masks * pk, s=(n,) * dim, axes=ax).reshape(len(bs.k), -1)
    t = bs.triangles
    i, j, m = t[:, 0], t[:, 1], t[:, 2]
    num = (JP[i] * JP[j] * J[m] + J[i] * JP[j] * JP[m] + JP[i] * J[j] * JP[m]).sum(-1)
    count = (J[i] * J[j] * J[m]).sum(-1)
    pbar = (J * JP).sum(-1) / (J * J).sum(-1)  # mode-averaged P per shell
    d = pbar[i] * pbar[j] + pbar[j] * pbar[m] + pbar[m] * pbar[i]
    return 2 * b * num / count / d


@pytest.mark.parametrize("dim,n,n_fields,k_frac", [(2, 32, 6000, 0.25), (3, 16, 2000, 0.5)])
def test_quadratic_field_q_is_2b(dim, n, n_fields, k_frac):
    rng = np.random.default_rng(3 + dim)
    # pixel σ_g ≈ 1 and b σ_g = 0.05: the O(b²σ²) terms of Q (about 0.3%) lie far below its errors (4%, 3%)
    box, b = 100.0, 0.05
    power = (lambda k: 3.7 * k**-1.5) if dim == 2 else (lambda k: 34.0 * k**-2.0)
    g = gaussian_fields(n_fields, n, dim, box, power, rng)
    delta = g + b * (g**2 - (g**2).mean())
    bs = bispectrum(delta, box, dim=dim, k_max=k_frac * math.pi * n / box)
    q = reduced_bispectrum(bs)
    expect = _expected_q(b, n, dim, box, power, bs)
    pulls = (q["Q"] - expect) / q["err"]
    assert np.abs(pulls).max() < 4.0, pulls
    rows = q["rows"] - expect
    assert _hotelling(rows) < 2.5
    # the test can fail: Q is resolved (2b = 0.1 at > 10σ in the combined configurations), so b = 0 is excluded
    w = 1 / q["err"] ** 2
    mean_ratio, err_ratio = (w * q["Q"] / expect).sum() / w.sum(), 1 / math.sqrt((w * expect**2).sum())
    assert abs(mean_ratio - 1) < 4 * err_ratio and err_ratio < 0.1, (mean_ratio, err_ratio)


def test_bad_input():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((50, 16, 16))
    with pytest.raises(ValueError, match="compare fields of one size"):
        compare_bispectra(a, a[:, :8, :8], box_size=10.0)
    with pytest.raises(ValueError, match="square"):
        bispectrum(rng.standard_normal((5, 16, 12)), 10.0)
    with pytest.raises(ValueError, match="simulate more fields"):
        compare_bispectra(a[:10], a, box_size=10.0, k_max=math.pi * 16 / 10.0 / 2)
    with pytest.raises(ValueError, match="lower k_max"):
        bispectrum(a, 10.0, k_max=math.pi * 16 / 10.0)
    with pytest.raises(ValueError, match="NaN"):
        bispectrum(np.full_like(a, np.nan), 10.0)
    with pytest.raises(ValueError, match="kind must be"):
        bispectrum(a, 10.0, triangles="isosceles")


def test_compare_fields_reports_what_the_power_spectrum_misses():
    """Lognormal fields and the same fields with Gaussian random phases have identical P(k) per field (χ² = 0), and
    the reduced bispectrum of compare_fields tells them apart; two lognormal sets agree."""
    import torch

    from physgen.diagnostics.emulator import compare_fields
    from simulators.cosmology import LognormalField

    sim, theta = LognormalField(n=32, box_size=128.0), torch.tensor([0.3, 0.8])
    g = torch.Generator().manual_seed(0)
    a = sim.simulate(theta.expand(200, -1), generator=g).numpy()
    b = sim.simulate(theta.expand(200, -1), generator=g).numpy()
    z = np.fft.rfft2(np.random.default_rng(5).standard_normal(b.shape))
    c = np.fft.irfft2(np.abs(np.fft.rfft2(b)) * z / np.abs(z), s=b.shape[1:])
    same, phases = compare_fields(a, b, box_size=128.0), compare_fields(b, c, box_size=128.0)
    assert phases["power_spectrum"]["chi2"] == pytest.approx(0.0, abs=1e-9)
    assert phases["bispectrum"]["p_value"] < 1e-10 and same["bispectrum"]["p_value"] > 1e-3
    assert np.mean(same["bispectrum"]["Q_sim"]) > 0.5  # lognormal: Q ~ 1 on these scales
    assert compare_fields(a, b, box_size=128.0, bispectrum=False)["bispectrum"] is None


def test_quadratic_white_noise_q_to_all_orders():
    """White g (pixel σ = 1), δ = g + b (g² - 1): every shell sees the one-point cumulants, κ3 = 6b + 8b³ and
    Var = 1 + 2b², so Q = κ3 / (3 Var²) = 2b (1 + 4b²/3) / (1 + 2b²)² exactly (b = 0.3: 0.483, not 2b = 0.6)."""
    rng = np.random.default_rng(7)
    b = 0.3
    g = rng.standard_normal((3000, 32, 32))
    bs = bispectrum(g + b * (g**2 - 1.0), 100.0)
    q = reduced_bispectrum(bs)
    expect = 2 * b * (1 + 4 * b**2 / 3) / (1 + 2 * b**2) ** 2
    assert _hotelling(q["rows"] - expect) < 2.5
    w = 1 / q["err"] ** 2
    mean, err = (w * q["Q"]).sum() / w.sum(), 1 / math.sqrt(w.sum())
    assert abs(mean - expect) < 4 * err and abs(mean - 2 * b) > 5 * err, (mean, err, expect)


def _tree_level_q(bs, n: int, box: float, omega_m: float, sigma8: float) -> np.ndarray:
    """Binned tree-level Q of the CIC-painted matter density: B = W1 W2 W3 [2 F2(k1, k2) P1 P2 + 2 perms] with the
    EdS kernel F2 = 5/7 + (k1·k2)/2 (1/k1² + 1/k2²) + 2/7 (k1·k2)²/(k1² k2²), P the linear EH98 spectrum at z = 0 and
    W = Π_a sinc²(k_a h / 2) the CIC window, averaged over the grid triangles of each shell triple (F2 is a sum of
    separable terms, so each is a Σ_x of three inverse DFTs), over the shells' mean W² P products."""
    import torch

    from simulators.cosmology.spectrum import linear_power

    f = np.fft.fftfreq(n, 1.0 / n) * (2 * math.pi / box)
    kv = np.meshgrid(f, f, f, indexing="ij")
    k2 = sum(a**2 for a in kv)
    nz = k2 > 0
    P = np.zeros_like(k2)
    P[nz] = linear_power(torch.tensor(np.sqrt(k2[nz])), omega_m, sigma8, quadrature="gauss").numpy().reshape(-1)
    W = np.prod([np.sinc(a * box / n / (2 * math.pi)) ** 2 for a in kv], axis=0)
    inv = np.where(nz, 1 / np.where(nz, k2, 1.0), 0.0)
    shell = np.digitize(np.sqrt(k2), bs.edges) - 1
    M = [((shell == s) & nz).astype(float) for s in range(len(bs.k))]
    ift = lambda a: np.fft.ifftn(a).reshape(-1)  # noqa: E731
    J, J1, A = [ift(m * W) for m in M], [ift(m) for m in M], [ift(m * W * P) for m in M]
    Av = [[ift(m * W * P * kv[a]) for a in range(3)] for m in M]
    Avi = [[ift(m * W * P * kv[a] * inv) for a in range(3)] for m in M]
    Aab = [[ift(m * W * P * kv[a] * kv[b] * inv) for a in range(3) for b in range(3)] for m in M]

    def f2(i, j, m):  # Σ_triangles 2 F2(k1, k2) P1 P2 W1 W2 W3 (unnormalised DFT sums)
        s = 5 / 7 * A[i] * A[j] + 0.5 * sum(Avi[i][a] * Av[j][a] + Av[i][a] * Avi[j][a] for a in range(3))
        s = s + 2 / 7 * sum(Aab[i][c] * Aab[j][c] for c in range(9))
        return 2 * (s * J[m]).sum().real

    t = bs.triangles
    B = np.array([(f2(i, j, m) + f2(j, m, i) + f2(m, i, j)) / (J1[i] * J1[j] * J1[m]).sum().real for i, j, m in t])
    pbar = np.array([(m * W**2 * P).sum() / m.sum() for m in M])
    return B / (pbar[t[:, 0]] * pbar[t[:, 1]] + pbar[t[:, 1]] * pbar[t[:, 2]] + pbar[t[:, 2]] * pbar[t[:, 0]])


@pytest.mark.slow
def test_nbody_q_matches_tree_level_on_large_scales():
    """NBody (32³ particles, 64³ mesh, L = 1024 Mpc/h, 10 steps, z = 0), 150 realisations: Q on the 28 triangles of
    k_f shells up to 3 k_Nyquist/16 (k < 0.034 h/Mpc) has the amplitude of the binned tree-level Q within 3σ (σ ≈ 4.5%),
    and a loose shape check: three independent sets gave Hotelling χ²/dof 1.14 (200 fields), 2.54 and 0.52, and the
    500 pooled 1.81 (p = 0.005; docs/simulators_nbody.md). About 2 min on one thread."""
    import torch

    from simulators.cosmology import NBody

    box, n, om, s8 = 1024.0, 64, 0.3111, 0.81
    sim = NBody(n_particles=32, n_mesh=n, box_size=box, n_steps=10, z_init=20.0, output="density")
    x = sim.simulate(torch.tensor([om, s8]).expand(150, -1), generator=torch.Generator().manual_seed(1))
    bs = bispectrum(x.double().numpy(), box, dim=3, k_max=3 / 16 * math.pi * n / box)
    q, tree = reduced_bispectrum(bs), _tree_level_q(bs, n, box, om, s8)
    assert len(tree) == 28 and _hotelling(q["rows"] - tree) < 3.0
    w = 1 / q["err"] ** 2
    ratio, err = (w * q["Q"] / tree).sum() / w.sum(), 1 / math.sqrt((w * tree**2).sum())
    assert abs(ratio - 1) < 3 * err and err < 0.06, (ratio, err)
