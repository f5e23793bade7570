"""Ising simulator: contract, bad input, exact oracles for the Markov chains (enumeration at
L = 2, 4; Kaufman at L = 16, 32; Onsager–Yang magnetisation), likelihood normalisation and the
error analysis."""

import math

import pytest
import torch

from physgen.core import Simulator
from simulators.ising import BETA_C, Ising
from simulators.ising.exact import bond_sum, enumeration_observables, kaufman_observables, onsager_magnetisation
from simulators.ising.kernels import acceptance_thresholds, from_sublattices, neighbour_sum_a, neighbour_sum_b, to_sublattices
from simulators.ising.stats import integrated_autocorrelation_time, thermodynamics
from simulators.ising.wolff import pack_rows, packed_sums, unpack_rows


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def assert_within(est, err, exact, n_sigma=3.0, what=""):
    est, err, exact = (torch.as_tensor(v, dtype=torch.float64) for v in (est, err, exact))
    z = (est - exact).abs() / err
    assert bool((err > 0).all()), f"{what}: zero error bar"
    assert bool((z < n_sigma).all()), f"{what}: estimate {est.tolist()} ± {err.tolist()} vs exact {exact.tolist()} (z = {z.tolist()})"


# ---------------------------------------------------------------- contract
def test_protocol_shapes_dtype_and_defaults():
    sim = Ising(8, sweeps=5)
    assert isinstance(sim, Simulator)
    assert sim.x_shape == (8, 8) and sim.params == ("beta",) and sim.h == 0.0 and sim.J == 1.0
    theta = sim.prior.sample((2, 3))
    x = sim.simulate(theta, generator=gen())
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    assert bool((x.abs() == 1).all())
    assert sim.log_likelihood(theta, x).shape == (2, 3)
    assert sim.config["L"] == 8 and "prior" in sim.config


def test_summary_output_and_field_parameter():
    sim = Ising(6, params=("beta", "h"), output="summary", sweeps=5)
    theta = sim.prior.sample((4,))
    x = sim.simulate(theta, generator=gen())
    assert x.shape == (4, 2) and sim.x_shape == (2,)
    assert bool((x[:, 0].abs() <= 2).all()) and bool((x[:, 1].abs() <= 1).all())


def test_same_seed_same_numbers():
    for algorithm in ("metropolis", "wolff"):
        sim = Ising(8, sweeps=4, algorithm=algorithm)
        theta = torch.tensor([[0.3], [0.5]])
        a = sim.simulate(theta, generator=gen(3))
        b = sim.simulate(theta, generator=gen(3))
        c = sim.simulate(theta, generator=gen(4))
        assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- bad input
def test_theta_outside_prior_is_an_error():
    sim = Ising(8)
    with pytest.raises(ValueError, match="outside the prior support"):
        sim.simulate(torch.tensor([[0.1]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        sim.simulate(torch.tensor([[math.nan]]))
    with pytest.raises(ValueError, match=r"shape \(\*B, 1\)"):
        sim.simulate(torch.tensor([[0.3, 0.1]]))
    # the likelihood is -inf there (so MCMC on prior + likelihood is unaffected)
    x = torch.ones(8, 8)
    assert sim.log_likelihood(torch.tensor([0.1]), x) == -math.inf


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"L": 7}, "even integer >= 2"),
        ({"L": 0}, "even integer >= 2"),
        ({"L": 8, "sweeps": -1}, "sweeps must be an integer >= 0"),
        ({"L": 8, "thin": 0}, "thin must be an integer >= 1"),
        ({"L": 8, "J": -1.0}, "J must be a finite number > 0"),
        ({"L": 8, "algorithm": "gibbs"}, "algorithm must be"),
        ({"L": 8, "output": "image"}, "output must be"),
        ({"L": 8, "params": ("beta", "h"), "h": 0.2}, "fixed field h must be None"),
        ({"L": 8, "params": ("T",)}, "params must be"),
        ({"L": 8, "cluster_updates": 0, "algorithm": "wolff"}, "cluster_updates must be an integer >= 1"),
    ],
)
def test_impossible_configs(kwargs, match):
    L = kwargs.pop("L")
    with pytest.raises(ValueError, match=match):
        Ising(L, **kwargs)


def test_no_exact_likelihood_with_field_beyond_enumeration():
    # the error names the configurations that have an exact likelihood
    for sim, x in ((Ising(6, params=("beta", "h")), torch.ones(6, 6)),
                   (Ising(6, params=("beta", "h"), output="summary"), torch.tensor([2.0, 1.0])),
                   (Ising(6, h=0.2, output="summary"), torch.tensor([2.0, 1.0]))):
        with pytest.raises(NotImplementedError, match=r"L <= 4.*params=\('beta', 'h'\)|params=\('beta',\).*L <= 4"):
            sim.log_likelihood(torch.tensor([0.3, 0.1][: len(sim.params)]), x)
        with pytest.raises(NotImplementedError, match="L <= 4"):
            sim.exact_posterior(x, 10, seed=0)


def test_summary_likelihood_beyond_enumeration_at_zero_field():
    # L > 4, h = 0: the summary's likelihood is that of one configuration with that summary (up to the
    # θ-independent ln g(B, M)), so it equals the spins' likelihood and gives the same exact posterior
    spins_sim, summary_sim = Ising(8, sweeps=20), Ising(8, output="summary")
    s = spins_sim.simulate(torch.tensor([0.4]), generator=gen())
    b, m = bond_sum(s) / 64, s.sum() / 64
    x = torch.stack([b, m])
    theta = torch.linspace(0.25, 0.75, 11).unsqueeze(-1)
    torch.testing.assert_close(summary_sim.log_likelihood(theta, x), spins_sim.log_likelihood(theta, s))
    a = spins_sim.grid_posterior(s).mean_std()
    c = summary_sim.grid_posterior(x).mean_std()
    torch.testing.assert_close(a, c)


@pytest.mark.parametrize("output, x, match", [
    ("spins", torch.ones(8, 8), r"\(\*B, 16, 16\).*Ising\(L=8\)"),
    ("spins", torch.ones(16, 15), r"\(\*B, 16, 16\)"),
    ("summary", torch.ones(3), r"\(\*B, 2\)"),
])
def test_wrong_lattice_size_names_the_expected_shape(output, x, match):
    sim = Ising(16, output=output)
    with pytest.raises(ValueError, match=match):
        sim.log_likelihood(torch.tensor([0.4]), x)
    with pytest.raises(ValueError, match=match):
        sim.exact_posterior(x, 10, seed=0)


# ---------------------------------------------------------------- kernels
def test_sublattice_layout_and_neighbour_sums():
    s = (2 * torch.randint(0, 2, (3, 6, 6), generator=gen()) - 1).to(torch.int8)
    a, b = to_sublattices(s)
    assert torch.equal(from_sublattices(a, b), s)
    full = sum(torch.roll(s, k, d) for k in (1, -1) for d in (-1, -2))
    ra, rb = to_sublattices(full)
    assert torch.equal(neighbour_sum_a(b), ra) and torch.equal(neighbour_sum_b(a), rb)
    w = pack_rows((s + 1) // 2)
    assert torch.equal(2 * unpack_rows(w) - 1, s)
    bsum, msum = packed_sums(w)
    assert torch.equal(bsum.float(), (s * (torch.roll(s, 1, -1) + torch.roll(s, 1, -2))).float().sum((-2, -1)))
    assert torch.equal(msum, s.sum((-2, -1), dtype=torch.int64))


def _wolff_run(word_bits, numpy_on_cpu, bits, beta, J, h, monkeypatch, steps=8):
    """Cluster sizes and final words of ``steps`` Wolff updates with a given word width and flood fill."""
    import simulators.ising.wolff as W

    monkeypatch.setattr(W, "_WORD_BITS", word_bits)
    monkeypatch.setattr(W, "_NUMPY_ON_CPU", numpy_on_cpu)
    w, g = W.pack_rows(bits), gen(9)
    sizes = [W.wolff_step(w, beta, J, h, generator=g) for _ in range(steps)]
    return torch.stack(sizes), W.unpack_rows(w), W.packed_sums(w), w.shape[-1]


@pytest.mark.parametrize("L, word_bits", [(10, 3), (10, 4), (64, 62), (64, 20)])
def test_wolff_clusters_do_not_depend_on_word_width_or_flood_fill(L, word_bits, monkeypatch):
    """Rows split over several words (carries between words), and the device-generic torch flood fill
    (used on CUDA), build exactly the clusters of one word per row / the numpy flood fill (CPU) from
    the same random numbers."""
    M = 5
    bits = torch.randint(0, 2, (M, L, L), generator=gen(8))
    beta, J, h = torch.linspace(0.35, 0.6, M), torch.ones(M), torch.tensor([0.0, 0.1, 0.0, -0.2, 0.3])
    ref = _wolff_run(62, True, bits, beta, J, h, monkeypatch)  # numpy, one word per row (two at L = 64)
    assert ref[3] == (1 if L <= 62 else 2)
    for numpy_on_cpu in (True, False):
        sizes, spins, (bsum, msum), k = _wolff_run(word_bits, numpy_on_cpu, bits, beta, J, h, monkeypatch)
        assert k == -(-L // word_bits) and k > 1
        assert torch.equal(sizes, ref[0]) and torch.equal(spins, ref[1])
        s = 2 * spins.long() - 1
        assert torch.equal(bsum, (s * (torch.roll(s, 1, -1) + torch.roll(s, 1, -2))).sum((-2, -1)))
        assert torch.equal(msum, s.sum((-2, -1)))
    assert not torch.equal(ref[1], bits.to(torch.int8))


def test_multiword_wolff_matches_enumeration(monkeypatch):
    """The Wolff step with rows split into two words (3 + 1 bits) on 2000 independent 4×4 lattices
    with a field, against exact enumeration."""
    import simulators.ising.wolff as W

    monkeypatch.setattr(W, "_WORD_BITS", 3)
    M, g = 2000, gen(10)
    beta, J, h = torch.full((M,), 0.4), torch.ones(M), torch.full((M,), 0.3)
    w = W.pack_rows(torch.randint(0, 2, (M, 4, 4), generator=g))
    assert w.shape == (M, 4, 2)
    es = []
    for k in range(60):
        W.wolff_step(w, beta, J, h, generator=g)
        if k >= 20:
            bsum, msum = W.packed_sums(w)
            es.append((-bsum - 0.3 * msum).double() / 16)
    per_lattice = torch.stack(es).mean(0)
    exact = enumeration_observables(4, 0.4, 1.0, 0.3)["energy_per_spin"]
    assert_within(per_lattice.mean(), per_lattice.std() / M**0.5, exact, what="multi-word Wolff E/N")


def test_acceptance_table():
    t = acceptance_thresholds(torch.tensor([0.4]), torch.tensor([1.0]), torch.tensor([0.0]))
    p = (t.double() + 2**31) / 2**32
    # columns u + 5σ: σ = 1 with u up neighbours has n = 2u - 4, ΔE = 2n (J = 1, h = 0)
    expect = [1.0, 1.0, 63 / 64, math.exp(-0.4 * 4), math.exp(-0.4 * 8)]
    assert torch.allclose(p[0, 5:], torch.tensor(expect, dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize(
    "L, algorithm, rule, h",
    [(2, "metropolis", "metropolis", 0.0), (4, "metropolis", "metropolis", 0.0), (4, "metropolis", "metropolis", 0.3),
     (4, "metropolis", "heatbath", -0.2), (4, "wolff", "metropolis", 0.0), (4, "wolff", "metropolis", 0.3)],
)
def test_chains_match_exact_enumeration(L, algorithm, rule, h):
    """Small lattices: every estimate within 3σ of exact enumeration. (Plain Metropolis with
    p = 1 at ΔE = 0 fails this at L = 2, z ≈ -17: its parallel update has absorbing cycles.)"""
    sim = Ising(L, params=("beta", "h"), algorithm=algorithm, rule=rule, sweeps=20, prior=None)
    # β small enough that the chains tunnel between the ±m states many times (at L = 4,
    # β = 0.7 and h ≠ 0 the minority state is visited too rarely for a 300-sweep run)
    theta = torch.tensor([[0.3, h], [0.45, h]])
    out = sim.observables(theta, 300, n_chains=32, generator=gen(1))
    ex = enumeration_observables(L, theta[:, 0].double(), 1.0, h)
    assert_within(out["energy_per_spin"], out["energy_per_spin_err"], ex["energy_per_spin"], what="E/N")
    assert_within(out["abs_magnetisation"], out["abs_magnetisation_err"], ex["abs_magnetisation"], what="|m|")
    assert_within(out["specific_heat_per_spin"], out["specific_heat_per_spin_err"], ex["specific_heat_per_spin"], what="C/N")


# ---------------------------------------------------------------- Kaufman at L = 16, 32
BETAS = [0.40, BETA_C, 0.50]


def _check_against_kaufman(L, algorithm, betas, sweeps, n_measure, n_chains, seed):
    sim = Ising(L, algorithm=algorithm, sweeps=sweeps)
    theta = torch.tensor(betas, dtype=torch.float64).unsqueeze(-1).float()
    out = sim.observables(theta, n_measure, n_chains=n_chains, generator=gen(seed))
    ex = kaufman_observables(L, theta[:, 0].double())
    assert_within(out["energy_per_spin"], out["energy_per_spin_err"], ex["energy_per_spin"], what=f"{algorithm} L={L} E/N")
    assert_within(
        out["specific_heat_per_spin"], out["specific_heat_per_spin_err"], ex["specific_heat_per_spin"], what=f"{algorithm} L={L} C/N"
    )
    # the error bars are meaningful, not huge
    assert bool((out["energy_per_spin_err"] < 0.01).all())
    return out


def test_metropolis_matches_kaufman_l16():
    _check_against_kaufman(16, "metropolis", BETAS, 300, 600, 16, seed=11)


def test_metropolis_matches_kaufman_l32_at_tc():
    out = _check_against_kaufman(32, "metropolis", [BETA_C], 600, 600, 16, seed=12)
    assert float(out["tau_int_energy"][0]) > 2.0  # Metropolis is slow at T_c


def test_wolff_matches_kaufman_l16_at_tc():
    out = _check_against_kaufman(16, "wolff", [BETA_C], 30, 150, 16, seed=13)
    assert float(out["tau_int_energy"][0]) < 3.0  # one Wolff sweep nearly decorrelates E


def test_wolff_matches_kaufman_l32_at_tc():
    _check_against_kaufman(32, "wolff", [BETA_C], 30, 120, 16, seed=14)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["metropolis", "wolff"])
@pytest.mark.parametrize("L", [16, 32])
def test_kaufman_several_temperatures_slow(L, algorithm):
    if algorithm == "metropolis":
        _check_against_kaufman(L, algorithm, [0.35, 0.40, BETA_C, 0.47, 0.55], 1000, 2000, 16, seed=20 + L)
    else:  # Wolff is for T <= ~T_c: at β = 0.35 clusters hold 1-2 spins and a sweep costs hundreds of flood fills
        _check_against_kaufman(L, algorithm, [0.40, BETA_C, 0.47, 0.55], 40, 200, 16, seed=20 + L)


def test_magnetisation_approaches_onsager_below_tc():
    """⟨|m|⟩ on the L = 32 torus against the infinite-lattice m_0; finite-size corrections are
    exponentially small deep in the ordered phase, larger close to T_c (allowance 0.003)."""
    sim = Ising(32, sweeps=200)
    theta = torch.tensor([[0.5], [0.6]])
    out = sim.observables(theta, 300, n_chains=8, generator=gen(5))
    m0 = onsager_magnetisation(theta[:, 0].double())
    diff = (out["abs_magnetisation"] - m0).abs()
    assert bool((diff < 3 * out["abs_magnetisation_err"] + 0.003).all()), (out["abs_magnetisation"], m0)


# ---------------------------------------------------------------- likelihood
@pytest.mark.parametrize("params", [("beta",), ("beta", "h")])
def test_likelihood_normalised_by_enumeration(params):
    sim = Ising(4, params=params)
    idx = torch.arange(2**16)
    x = (2 * ((idx.unsqueeze(-1) >> torch.arange(16)) & 1) - 1).reshape(-1, 4, 4).float()
    theta = torch.tensor([0.45] if params == ("beta",) else [0.45, -0.3])
    ll = sim.log_likelihood(theta.expand(len(x), -1), x)
    assert abs(float(torch.logsumexp(ll, 0))) < 1e-9


def test_summary_likelihood_normalised():
    sim = Ising(4, params=("beta", "h"), output="summary")
    from simulators.ising.exact import density_of_states

    B, M, _ = density_of_states(4)
    x = torch.stack([B / 16, M / 16], -1).float()
    ll = sim.log_likelihood(torch.tensor([0.5, 0.2]).expand(len(x), -1), x)
    assert abs(float(torch.logsumexp(ll, 0))) < 1e-9
    assert sim.log_likelihood(torch.tensor([0.5, 0.2]), torch.tensor([2.0, 0.5])) == -math.inf  # impossible (B, M)


def test_kaufman_likelihood_peaks_at_true_beta():
    """log p(x|β) by Kaufman (L = 16): the MLE over a β grid lands near the simulating β."""
    sim = Ising(16, sweeps=300)
    x = sim.simulate(torch.full((8, 1), 0.35), generator=gen(2))
    grid = torch.linspace(0.21, 0.79, 59).unsqueeze(-1)
    ll = sim.log_likelihood(grid.unsqueeze(1), x).sum(-1)  # (59,), 8 iid configurations
    assert abs(float(grid[ll.argmax(), 0]) - 0.35) < 0.04


# ---------------------------------------------------------------- error analysis
def test_tau_int_of_ar1_process():
    rho, T, C = 0.8, 20000, 8
    g = gen(7)
    noise = torch.randn(C, T, generator=g, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0] / math.sqrt(1 - rho**2)
    for t in range(1, T):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    tau = float(integrated_autocorrelation_time(x))
    assert abs(tau - (1 + rho) / (2 * (1 - rho))) < 0.5  # exact τ_int = 4.5


def test_jackknife_errors_are_calibrated():
    """iid Gaussian 'energies': the error of the mean equals σ/√n."""
    g = gen(9)
    E = torch.randn(1, 16, 400, generator=g, dtype=torch.float64) * 10.0
    out = thermodynamics(E, torch.ones_like(E), torch.tensor([1.0]), n_sites=1)
    assert abs(float(out["energy_per_spin_err"][0]) / (10.0 / 80.0) - 1) < 0.4
    assert abs(float(out["tau_int_energy"][0]) - 0.5) < 0.2


def test_an_empty_batch_gives_an_empty_result():
    for algorithm in ("metropolis", "wolff"):
        assert Ising(8, algorithm=algorithm).simulate(torch.zeros(0, 1)).shape == (0, 8, 8)
    assert Ising(8, output="summary").simulate(torch.zeros(3, 0, 1)).shape == (3, 0, 2)
