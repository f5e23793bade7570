"""simulators.sbibm: the six tasks added to the first four (gaussian_linear_uniform, slcp_distractors,
bernoulli_glm, bernoulli_glm_raw, sir, lotka_volterra).

Oracles: sbibm 1.1.0's own observations (x_o at its true θ must be a typical draw of our simulator, scored by
our log_likelihood; sbibm's summary statistics equal Xᵀy of its raw spikes), torch/scipy densities for every
likelihood, simulated moments, scipy's solve_ivp for the batched RK4 solver, and physgen.simulate's NaN policy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import solve_ivp

import physgen
from physgen.core import Simulator
from physgen.priors import sample_prior
from simulators.sbibm import TASKS, get_task, observation, observations, true_parameters
from physgen.priors import LogNormal
from simulators.sbibm._ode import rk4
from simulators.sbibm.slcp_distractors import student_t_mixture_log_prob

NEW = {
    "gaussian_linear_uniform": (10, 10),
    "slcp_distractors": (5, 100),
    "bernoulli_glm": (10, 10),
    "bernoulli_glm_raw": (10, 100),
    "sir": (2, 10),
    "lotka_volterra": (4, 20),
}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _prior_draws(task, n: int, seed: int = 0) -> torch.Tensor:
    return sample_prior(task.prior, (n,), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- contract
@pytest.mark.parametrize("name", sorted(NEW))
def test_contract(name):
    task = get_task(name)
    d, f = NEW[name]
    assert name in TASKS and isinstance(task, Simulator) and task.name == name and task.x_shape == (f,)
    theta = _prior_draws(task, 12).reshape(3, 4, d)
    x = task.simulate(theta, generator=torch.Generator().manual_seed(1))
    assert x.shape == (3, 4, f) and x.dtype == theta.dtype and torch.isfinite(x).all()
    assert task.simulate(theta[0, 0], generator=torch.Generator().manual_seed(1)).shape == (f,)
    ll = task.log_likelihood(theta, x)
    assert ll.shape == (3, 4) and torch.isfinite(ll).all()
    ll_all = task.log_likelihood(theta.reshape(12, 1, d), x.reshape(1, 12, f))
    assert ll_all.shape == (12, 12)
    torch.testing.assert_close(ll_all.diagonal(), ll.reshape(12), rtol=1e-5, atol=1e-4)
    again = task.simulate(theta, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, again)
    assert torch.isfinite(task.prior.log_prob(theta)).all()
    with pytest.raises(ValueError, match="theta has shape"):
        task.simulate(torch.zeros(3, d + 1))


@pytest.mark.parametrize("name", ["sir", "lotka_volterra"])
def test_lognormal_prior_support(name):
    task = get_task(name)
    d = NEW[name][0]
    bad = torch.ones(3, d)
    bad[0, 0], bad[1, -1], bad[2, 0] = 0.0, -1.0, float("nan")
    assert torch.isneginf(task.prior.log_prob(bad)).all()
    draws = _prior_draws(task, 20_000)
    logs = torch.log(draws)
    torch.testing.assert_close(logs.mean(0), task.prior.loc, atol=0.02, rtol=0)
    torch.testing.assert_close(logs.std(0), task.prior.scale, atol=0.01, rtol=0)


def test_gaussian_linear_uniform_prior_box():
    task = get_task("gaussian_linear_uniform")
    theta = torch.zeros(2, 10)
    theta[0, 3], theta[1, 9] = 1.001, -1.5
    assert torch.isneginf(task.prior.log_prob(theta)).all()
    assert torch.isfinite(task.prior.log_prob(torch.ones(10))).all()


# ---------------------------------------------------------------- against sbibm's own observations
@pytest.mark.parametrize("name", sorted(NEW))
def test_sbibm_observations_are_typical(name):
    """x_o at sbibm's true θ scores like our own simulations there: its log-likelihood lies within the range of
    4,000 simulations' (200 for slcp_distractors), padded by 1 nat, at each of the ten observations (a wrong
    definition -- an order, a save time, a noise level -- puts x_o far outside). The most extreme x_o is sir's
    observation 10, at the 0.08 % quantile of 50,000 simulations (docs/sbibm_tasks.md)."""
    task = get_task(name)
    xs, g = observations(name), torch.Generator().manual_seed(0)
    assert xs.shape == (10, NEW[name][1])
    n, pad = (200, 25.0) if name == "slcp_distractors" else (4000, 1.0)  # heavy-tailed distractors: wider
    for k in range(1, 11):
        theta = true_parameters(name, k)
        ll_o = float(task.log_likelihood(theta, observation(name, k)))
        ll = task.log_likelihood(theta, task.simulate(theta.expand(n, -1), generator=g))
        lo, hi = float(ll.min()), float(ll.max())
        assert lo - pad <= ll_o <= hi + pad, (name, k, ll_o, lo, hi)


def test_bernoulli_glm_summary_is_design_transpose_spikes():
    task, raw = get_task("bernoulli_glm"), get_task("bernoulli_glm_raw")
    for k in range(1, 11):
        y = observation("bernoulli_glm_raw", k, dtype=torch.float64)
        assert set(y.unique().tolist()) <= {0.0, 1.0}
        s = task.summary(y.to(torch.float32))
        torch.testing.assert_close(s, observation("bernoulli_glm", k), atol=1e-4, rtol=1e-5)
        theta = true_parameters("bernoulli_glm", k)
        torch.testing.assert_close(task.log_likelihood(theta, s), raw.log_likelihood(theta, y.float()))
    # the frozen stimulus is N(0, 1) white noise from numpy's RandomState(42), as sbibm's stimulus_I.pt
    stim = task.design[:, 1]
    assert torch.equal(stim, torch.from_numpy(np.random.RandomState(42).randn(100).astype(np.float32)))
    assert torch.equal(task.design[5:, 6], stim[:95]) and torch.all(task.design[:5, 6] == 0)


def test_slcp_distractors_permutation_and_data_part():
    task = get_task("slcp_distractors")
    # sbibm's permutation_idx.torch starts with these entries and puts the 8 data values here
    assert task.permutation[:6].tolist() == [87, 47, 39, 9, 25, 21]
    assert sorted(task.data_index.tolist()) == [16, 21, 22, 23, 33, 42, 67, 90]
    for k in range(1, 11):
        torch.testing.assert_close(task.data_part(observation("slcp_distractors", k)), observation("slcp", k))


# ---------------------------------------------------------------- likelihoods vs independent densities
def test_bernoulli_glm_likelihood_and_moments():
    task, raw = get_task("bernoulli_glm"), get_task("bernoulli_glm_raw")
    theta = _prior_draws(task, 3, seed=3).double()
    y = raw.simulate(theta, generator=torch.Generator().manual_seed(2))
    psi = theta @ task.design.double().T
    oracle = torch.distributions.Bernoulli(logits=psi).log_prob(y).sum(-1)
    torch.testing.assert_close(raw.log_likelihood(theta, y), oracle)
    torch.testing.assert_close(task.log_likelihood(theta, task.summary(y)), oracle)
    ys = raw.simulate(theta[0].expand(20_000, -1), generator=torch.Generator().manual_seed(4))
    p = torch.sigmoid(psi[0])
    se = torch.sqrt(p * (1 - p) / 20_000)
    assert ((ys.mean(0) - p).abs() < 5 * se + 1e-9).all()


def test_gaussian_linear_uniform_likelihood():
    task = get_task("gaussian_linear_uniform")
    theta = _prior_draws(task, 5).double()
    x = task.simulate(theta, generator=torch.Generator().manual_seed(0))
    oracle = torch.distributions.MultivariateNormal(theta, 0.1 * torch.eye(10, dtype=torch.float64)).log_prob(x)
    torch.testing.assert_close(task.log_likelihood(theta, x), oracle)


def test_sir_likelihood_and_moments():
    task = get_task("sir")
    theta = torch.tensor([[0.6, 0.19], [0.35, 0.12]], dtype=torch.float64)
    p = task.infected_fraction(theta)
    x = task.simulate(theta, generator=torch.Generator().manual_seed(0))
    oracle = torch.distributions.Binomial(1000, probs=p.clamp(1e-300, 1.0)).log_prob(x).sum(-1)
    torch.testing.assert_close(task.log_likelihood(theta, x), oracle)
    xs = task.simulate(theta[0].expand(20_000, -1), generator=torch.Generator().manual_seed(1))
    se = torch.sqrt(1000 * p[0] * (1 - p[0]) / 20_000)
    assert ((xs.mean(0) - 1000 * p[0]).abs() <= 5 * se + 1e-9).all()
    # x_k ~ Binomial(1000, p_k): the pmf sums to one over 0..1000 (one coordinate, summed exactly)
    grid = torch.arange(1001, dtype=torch.float64)
    xg = torch.zeros(1001, 10, dtype=torch.float64)
    xg[:, 3] = grid
    lp = task.log_likelihood(theta[0], xg) - task.log_likelihood(theta[0], torch.zeros(10, dtype=torch.float64))
    lp = lp + torch.distributions.Binomial(1000, probs=p[0, 3]).log_prob(torch.tensor(0.0, dtype=torch.float64))
    assert abs(float(torch.logsumexp(lp, 0))) < 1e-9


def test_lotka_volterra_likelihood_and_moments():
    task = get_task("lotka_volterra")
    theta = true_parameters("lotka_volterra", 1).double().unsqueeze(0)
    mu = task.log_populations(theta)
    x = task.simulate(theta.expand(20_000, -1), generator=torch.Generator().manual_seed(0))
    lx = torch.log(x)
    assert ((lx.mean(0) - mu[0]).abs() < 5 * 0.1 / math.sqrt(20_000)).all()
    assert ((lx.std(0) - 0.1).abs() < 0.004).all()
    oracle = torch.distributions.LogNormal(mu, 0.1).log_prob(x[:5]).sum(-1)
    torch.testing.assert_close(task.log_likelihood(theta, x[:5]), oracle)


def test_student_t_mixture_density_matches_scipy():
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(3, 5)) * 3
    tril = np.tril(rng.normal(size=(3, 5, 5))) + np.stack([np.diag(np.exp(rng.normal(size=5))) for _ in range(3)])
    tril[1, 2, 2] *= -1.0  # a negative diagonal entry, as in sbibm's factors
    e = rng.normal(size=(7, 5)) * 4
    ref = np.log(np.mean([stats.multivariate_t(loc[c], tril[c] @ tril[c].T, df=2).pdf(e) for c in range(3)], axis=0))
    ours = student_t_mixture_log_prob(torch.from_numpy(e), torch.from_numpy(loc), torch.from_numpy(tril), 2.0)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10)


def test_slcp_distractors_sampler_and_likelihood():
    task = get_task("slcp_distractors")
    e = task.sample_distractors((3000,), torch.zeros(1, dtype=torch.float64), torch.Generator().manual_seed(0))
    # an independent draw of the same recipe (numpy's generator): component, N(0, I), χ²₂
    rng = np.random.default_rng(0)
    loc, tril = task._loc.numpy(), task._tril.numpy()
    c = rng.integers(0, 20, 3000)
    z, w = rng.normal(size=(3000, 92)), rng.chisquare(2, size=3000)
    other = loc[c] + np.einsum("nij,nj->ni", tril[c], z) / np.sqrt(w / 2)[:, None]
    for j in (0, 45, 91):  # KS on three coordinates
        assert stats.ks_2samp(e[:, j].numpy(), other[:, j]).pvalue > 1e-3
    # the SLCP part of the likelihood is SLCP's; the distractor part does not depend on θ
    theta = _prior_draws(task, 2)
    x = task.simulate(theta, generator=torch.Generator().manual_seed(0))
    diff = task.log_likelihood(theta, x) - task.slcp.log_likelihood(theta, task.data_part(x))
    torch.testing.assert_close(diff, task.distractor_log_prob(x[:, task.noise_index]))
    assert torch.isfinite(diff).all()


# ---------------------------------------------------------------- the ODE solver
def test_rk4_fourth_order_on_a_linear_ode():
    y0 = torch.ones(2, 1, dtype=torch.float64)
    rate = torch.tensor([[-1.0], [0.5]], dtype=torch.float64)
    errs = []
    for h in (0.2, 0.1):
        y = rk4(lambda y: rate * y, y0, [1.0, 2.0], h)
        errs.append(float((y[:, -1, 0] - torch.exp(2.0 * rate[:, 0])).abs().max()))
    assert errs[1] < 1e-5 and 12 < errs[0] / errs[1] < 20  # 2⁴ = 16
    with pytest.raises(ValueError, match="increasing"):
        rk4(lambda y: y, y0, [1.0, 0.5], 0.1)


@pytest.mark.parametrize("name", ["sir", "lotka_volterra"])
def test_ode_tasks_match_solve_ivp(name):
    """The batched RK4 solution against scipy's DOP853 at rtol 1e-11, over 40 prior draws: the
    log-likelihood of a simulated x differs by less than 0.05 (0.01 for 95 % of the draws)."""
    task = get_task(name)
    theta = _prior_draws(task, 40, seed=5).double()
    x = task.simulate(theta, generator=torch.Generator().manual_seed(6))
    ours = task.log_likelihood(theta, x)
    exact = []
    for th in theta.tolist():
        if name == "sir":
            b, c = th
            sol = solve_ivp(
                lambda t, y, b=b, c=c: [-b * y[0] * y[1], b * y[0] * y[1] - c * y[1]],
                (0, 153),
                [1 - 1e-6, 1e-6],
                t_eval=task.T_SAVE,
                rtol=1e-11,
                atol=1e-16,
                method="DOP853",
            )
            exact.append(sol.y[1])
        else:
            a, b, c, d = th
            sol = solve_ivp(
                lambda t, u, a=a, b=b, c=c, d=d: [a * u[0] - b * u[0] * u[1], -c * u[1] + d * u[0] * u[1]],
                (0, 18.9),
                [30.0, 1.0],
                t_eval=task.T_SAVE,
                rtol=1e-11,
                atol=1e-14,
                method="DOP853",
            )
            exact.append(np.log(np.clip(sol.y, 1e-10, 1e4)).reshape(-1))
    ref = torch.tensor(np.array(exact))
    if name == "sir":
        ref_ll = torch.distributions.Binomial(1000, probs=ref.clamp(0, 1)).log_prob(x).sum(-1)
    else:
        ref_ll = torch.distributions.LogNormal(ref, 0.1).log_prob(x).sum(-1)
    err = (ours - ref_ll).abs()
    assert float(err.max()) < 0.05 and float(torch.quantile(err, 0.95)) < 0.01, err.max()


# ---------------------------------------------------------------- NaN simulations
class _WidePrior:
    """A task with a much wider log-normal prior, so that some θ make the fixed-step solver overflow."""

    def __init__(self, task, scale: float):
        self.task, self.name, self.x_shape = task, task.name + "_wide", task.x_shape
        self.config: dict = {}
        self.prior = LogNormal(task.prior.loc, torch.full_like(task.prior.scale, scale))

    def simulate(self, theta, *, generator=None):
        return self.task.simulate(theta, generator=generator)


@pytest.mark.parametrize("name,theta", [("sir", [30.0, 0.1]), ("lotka_volterra", [400.0, 50.0, 400.0, 50.0])])
def test_extreme_parameters_give_nan_rows(name, theta):
    task = get_task(name)
    th = torch.stack([torch.tensor(theta), true_parameters(name, 1)])
    x = task.simulate(th, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(x[0]).all() and torch.isfinite(x[1]).all()


@pytest.mark.parametrize("name,scale", [("sir", 3.0), ("lotka_volterra", 2.0)])
def test_nan_rows_counted_and_dropped_by_simulate(name, scale):
    wide = _WidePrior(get_task(name), scale)
    theta = sample_prior(wide.prior, (400,), generator=torch.Generator().manual_seed(0))
    n_nan = int(torch.isnan(wide.simulate(theta)).any(-1).sum())
    assert n_nan > 0  # the setup does produce failures
    with pytest.warns(UserWarning, match="dropped"):
        data = physgen.simulate(wide, 400, seed=0, batch_size=100)
    assert data.meta["n_dropped"] > 0 and data.meta["n_dropped"] + data.meta["n_valid"] == 400
    assert data.theta.shape[0] == data.meta["n_valid"] and bool(torch.isfinite(torch.as_tensor(data.x)).all())


def test_observation_lookup_errors():
    with pytest.raises(ValueError, match=r"num_observation must be 1\.\.10"):
        observation("sir", 11)
    with pytest.raises(ValueError, match="no sbibm observations for task 'moons'"):
        observation("moons", 1)
    assert observation("slcp_distractors", 1).shape == (100,) and true_parameters("sir", 1).shape == (2,)


def test_lognormal_prior_reaches_the_posterior(tmp_path):
    """sir's LogNormal prior is recorded with the data, so the posterior's flow works in log θ: draws stay
    positive, and the prior survives a save/load round trip."""
    task = get_task("sir")
    data = physgen.simulate(task, 300, seed=0)
    assert data.meta["prior"]["type"] == "LogNormal"
    post = physgen.fit_posterior(data, max_epochs=2, seed=0, model_options={"transforms": 2, "hidden_features": [16]})
    x_o = observation("sir", 1)
    draws = post.sample(500, x_o, seed=0)
    assert bool((draws > 0).all())
    post.save(tmp_path / "post.safetensors")
    back = physgen.load(tmp_path / "post.safetensors")
    torch.testing.assert_close(back.log_prob(draws[:20], x_o), post.log_prob(draws[:20], x_o))
