"""Multi-spin-coded Ising kernel (``Ising(L, algorithm="multispin")``): packing, bit-sliced counts and
thresholds, per-lane Bernoulli flips (right probability, no correlation between the 64 lanes of a word),
exact oracles (enumeration at L = 2, 4 per β, with and without a field; Kaufman at L = 16, 32 with
jackknife errors over independent chains), reproducibility and bad input."""

import math
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from simulators.ising import BETA_C, Ising
from simulators.ising.exact import bond_sum, enumeration_observables, kaufman_observables, magnetisation_sum
from simulators.ising.kernels import acceptance_probabilities
from simulators.ising.multispin import LANES, MultispinChain, class_tables, load_kernels, pack_lanes, unpack_lanes

K = load_kernels()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def assert_within(est, err, exact, n_sigma=3.0, what=""):
    est, err, exact = (torch.as_tensor(v, dtype=torch.float64) for v in (est, err, exact))
    z = (est - exact).abs() / err
    assert bool((err > 0).all()), f"{what}: zero error bar"
    assert bool((z < n_sigma).all()), f"{what}: estimate {est.tolist()} ± {err.tolist()} vs exact {exact.tolist()} (z = {z.tolist()})"


def random_spins(M, L, seed=0):
    return (2 * torch.randint(0, 2, (M, L, L), generator=gen(seed)) - 1).to(torch.int8)


# ---------------------------------------------------------------- layout, counts, tables, random words
@pytest.mark.parametrize("M, L", [(1, 2), (64, 4), (70, 6), (130, 8)])
def test_pack_roundtrip_and_counts(M, L):
    s = random_spins(M, L, seed=M + L)
    words = pack_lanes(((s + 1) // 2).numpy())
    assert words.shape == (-(-M // LANES), L, L) and words.dtype == np.uint64
    assert np.array_equal(unpack_lanes(words, M), s.numpy())
    assert np.array_equal(pack_lanes(s.numpy()), words)  # ±1 or bits: up = value > 0
    # lattice m is bit m % 64 of group m // 64
    m = M - 1
    assert int((words[m // 64, 0, 0] >> np.uint64(m % 64)) & np.uint64(1)) == int(s[m, 0, 0] > 0)
    chain = MultispinChain(s, torch.full((M,), 0.4), torch.ones(M), torch.zeros(M), "metropolis", gen(1))
    b, mag = chain.measure()
    assert torch.equal(b, bond_sum(s).long()) and torch.equal(mag, magnetisation_sum(s).long())
    assert torch.equal(chain.spins(), s)


def test_xoshiro256starstar_reference_outputs():
    # the first outputs of the reference xoshiro256** C code from the state (1, 2, 3, 4)
    state = np.array([1, 2, 3, 4], dtype=np.uint64)
    assert K.xoshiro_words(state, 4).tolist() == [11520, 0, 1509978240, 1215971899390074240]


@pytest.mark.parametrize("rule, h", [("metropolis", 0.0), ("heatbath", 0.0), ("metropolis", 0.37), ("heatbath", -0.2)])
def test_threshold_planes_hold_floor_p_2_32(rule, h):
    M = 70
    beta = torch.linspace(0.05, 0.9, M, dtype=torch.float64)
    J, hh = torch.ones(M, dtype=torch.float64), torch.full((M,), h, dtype=torch.float64)
    W, A, field = class_tables(beta, J, hh, rule)
    assert field == (h != 0) and W.shape == (2, 10 if field else 5, 32) and A.shape == (2, 10 if field else 5)
    p = acceptance_probabilities(beta, J, hh, rule).numpy()
    c = np.arange(5)
    p = p[:, np.concatenate([c, 9 - c]) if field else 9 - c]  # class c (+ 5σ): c antialigned neighbours
    for lane in (0, 1, 33, 63, 64, 69):
        g, bit = divmod(lane, 64)
        planes = (W[g] >> np.uint64(bit)) & np.uint64(1)  # (K, 32), most significant bit first
        T = (planes.astype(np.int64) << np.arange(31, -1, -1)).sum(-1)
        always = ((A[g] >> np.uint64(bit)) & np.uint64(1)).astype(bool)
        expect = np.floor(p[lane] * 2.0**32).astype(np.int64)
        assert np.array_equal(always, expect >= 2**32)
        assert np.array_equal(T[~always], expect[~always])
    if rule == "metropolis" and not field:  # ΔE < 0 (c = 3, 4) flips with probability exactly 1
        assert (A[0, 3] == np.uint64(2**64 - 1)) and (A[0, 4] == np.uint64(2**64 - 1))
    pad = np.uint64(2**64 - 2**6)  # padding lanes 70..127 flip with p = 1: they never draw random bits
    assert ((A[1] & pad) == pad).all() and not (W[1] & pad).any()


def _first_half_flips(beta, h, up, repeats, L=16, seed=0):
    """Flip indicators of every colour-0 site in one half sweep from a uniform state: (repeats*L²/2, 64)."""
    M = beta.shape[0]
    W, A, field = class_tables(beta, torch.ones(M, dtype=torch.float64), h, "metropolis")
    state = np.array([seed + 1, 2, 3, 4], dtype=np.uint64)
    init = pack_lanes(np.broadcast_to(up.reshape(M, 1, 1), (M, L, L)).astype(np.uint8))
    colour0 = (np.add.outer(np.arange(L), np.arange(L)) % 2) == 0
    out = []
    for _ in range(repeats):
        S = init.copy()
        K.sweep_words(S, W, A, 1, state, field)
        flips = np.unpackbits((S ^ init)[0][colour0].view(np.uint8).reshape(-1, 8), axis=-1, bitorder="little")
        out.append(flips)
    return np.concatenate(out).astype(np.float64)


def test_flip_frequencies_per_lane_and_no_correlation_between_lanes():
    """From the all-up state every colour-0 site has c = 0 and flips with e^{-8β}: per lane, with its
    own β; and the 64 lanes of a word are independent (a random number shared by the lanes would
    give correlations near 1; here every pair's correlation is O(1/sqrt(n)))."""
    beta = torch.linspace(0.05, 0.3, LANES, dtype=torch.float64)
    X = _first_half_flips(beta, torch.zeros(LANES, dtype=torch.float64), np.ones(LANES), repeats=300)
    n = X.shape[0]
    p = torch.exp(-8 * beta).numpy()
    z = (X.mean(0) - p) / np.sqrt(p * (1 - p) / n)
    assert np.abs(z).max() < 4.5, z
    corr = np.corrcoef(X.T)[np.triu_indices(LANES, 1)]  # 2016 pairs, each ≈ N(0, 1/n)
    assert np.abs(corr).max() * math.sqrt(n) < 5.5
    assert abs((corr**2).mean() * n - 1.0) < 0.15  # χ² with 2016 degrees of freedom, per pair


def test_flip_frequencies_with_a_field_use_the_spin_of_each_lane():
    """With h != 0 the class is (σ, c): all-up lanes flip with e^{-2β(4 + h)}, all-down ones with e^{-2β(4 - h)}."""
    beta = torch.full((LANES,), 0.15, dtype=torch.float64)
    h = torch.full((LANES,), 0.5, dtype=torch.float64)
    up = np.arange(LANES) % 2
    X = _first_half_flips(beta, h, up, repeats=150, seed=7)
    n = X.shape[0]
    p = np.where(up == 1, np.exp(-2 * 0.15 * 4.5), np.exp(-2 * 0.15 * 3.5))
    z = (X.mean(0) - p) / np.sqrt(p * (1 - p) / n)
    assert np.abs(z).max() < 4.5, z


# ---------------------------------------------------------------- exact oracles
@pytest.mark.parametrize(
    "L, rule, h",
    [(2, "metropolis", 0.0), (4, "metropolis", 0.0), (4, "metropolis", 0.3), (4, "heatbath", -0.2), (4, "heatbath", 0.0)],
)
def test_matches_exact_enumeration(L, rule, h):
    """Two β (and a field) share the words: 32 chains each, per-lane β. Every estimate within 3σ."""
    sim = Ising(L, params=("beta", "h"), algorithm="multispin", rule=rule, sweeps=20)
    theta = torch.tensor([[0.3, h], [0.45, h]])
    out = sim.observables(theta, 1000, n_chains=32, generator=gen(3))
    ex = enumeration_observables(L, theta[:, 0].double(), 1.0, h)
    for key in ("energy_per_spin", "abs_magnetisation", "specific_heat_per_spin"):
        assert_within(out[key], out[key + "_err"], ex[key], what=f"L={L} {rule} h={h} {key}")


@pytest.mark.parametrize("L, betas, sweeps, n_measure", [(16, [0.40, BETA_C, 0.50], 400, 800), (32, [BETA_C], 1000, 1500)])
def test_matches_kaufman(L, betas, sweeps, n_measure):
    """64 independent chains per β (one word): jackknife errors over chains, no autocorrelation assumption."""
    sim = Ising(L, algorithm="multispin", sweeps=sweeps)
    theta = torch.tensor(betas, dtype=torch.float64).unsqueeze(-1).float()
    out = sim.observables(theta, n_measure, n_chains=64, generator=gen(L))
    ex = kaufman_observables(L, theta[:, 0].double())
    for key in ("energy_per_spin", "specific_heat_per_spin"):
        assert_within(out[key], out[key + "_err"], ex[key], what=f"multispin L={L} {key}")
    assert bool((out["energy_per_spin_err"] < 0.005).all())  # the test has teeth
    if L == 32:
        assert float(out["tau_int_energy"][0]) > 5.0  # Metropolis dynamics: slow at T_c


# ---------------------------------------------------------------- API, reproducibility, bad input
def test_simulate_through_the_simulator_same_seed_same_numbers():
    sim = Ising(8, algorithm="multispin", sweeps=30)
    theta = sim.prior.sample((5,))
    x1 = sim.simulate(theta, generator=gen(4))
    x2 = sim.simulate(theta, generator=gen(4))
    x3 = sim.simulate(theta, generator=gen(5))
    assert x1.shape == (5, 8, 8) and x1.dtype == torch.float32 and bool((x1.abs() == 1).all())
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    summ = Ising(8, algorithm="multispin", sweeps=30, output="summary").simulate(theta, generator=gen(4))
    assert torch.allclose(summ[:, 0], bond_sum(x1) / 64) and torch.allclose(summ[:, 1], magnetisation_sum(x1) / 64)
    assert Ising(8, algorithm="multispin").config["algorithm"] == "multispin"


def test_odd_or_tiny_lattices_are_refused_naming_what_works():
    with pytest.raises(ValueError, match="even L >= 2"):
        pack_lanes(np.zeros((3, 5, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="even L >= 2"):
        MultispinChain(torch.ones((2, 1, 1), dtype=torch.int8), *(torch.ones(2),) * 3, "metropolis", None)
    with pytest.raises(ValueError, match="even integer >= 2"):
        Ising(7, algorithm="multispin")
    with pytest.raises(ValueError, match="'metropolis', 'multispin' or 'wolff'"):
        Ising(8, algorithm="multispn")
    with pytest.raises(ValueError, match="'metropolis' or 'heatbath'"):
        Ising(8, algorithm="multispin", rule="glauber")


def test_missing_numba_is_an_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "simulators.ising.multispin_kernels", None)
    with pytest.raises(ImportError, match=r"pip install numba.*algorithm='metropolis'"):
        Ising(8, algorithm="multispin")


def test_three_class_specialisation_is_the_five_class_update():
    """Metropolis at h = 0: classes c = 3, 4 flip with p = 1, so the kernel compiled for 3 random classes
    must give bit-identical lattices to the general 5-class one (same random words)."""
    M, L = 64, 8
    W, A, field = class_tables(torch.full((M,), 0.42, dtype=torch.float64), torch.ones(M), torch.zeros(M))
    assert not field and not W[:, 3:].any()
    S3 = pack_lanes(random_spins(M, L, seed=9).numpy())
    S5 = S3.copy()
    st3, st5 = np.array([5, 6, 7, 8], dtype=np.uint64), np.array([5, 6, 7, 8], dtype=np.uint64)
    assert K._sweep3(S3, W, A, 20, st3) == K._sweep5(S5, W, A, 20, st5)
    assert np.array_equal(S3, S5) and np.array_equal(st3, st5)


@pytest.mark.slow
def test_l64_at_tc_matches_kaufman_slow():
    """The benchmark's accuracy criterion: L = 64 at β_c, 64 chains, 3000 + 3000 sweeps."""
    sim = Ising(64, algorithm="multispin", sweeps=3000)
    out = sim.observables(torch.tensor([[BETA_C]]), 3000, n_chains=64, generator=gen(64))
    ex = kaufman_observables(64, torch.tensor([BETA_C], dtype=torch.float64))
    for key in ("energy_per_spin", "specific_heat_per_spin"):
        assert_within(out[key], out[key + "_err"], ex[key], what=f"multispin L=64 {key}")
