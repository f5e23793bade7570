"""Accuracy of the ODE-based families: ODE solver orders, exact oracles for the change of variables
(analytic vector fields / denoisers of a Gaussian), a cheap trained accuracy check against a closed-form
posterior, and (slow) the C2ST targets on two_moons and gaussian_linear with 10,000 simulations.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from physgen.models._ode import odeint, time_grid
from physgen.models.diffusion import Diffusion
from physgen.models.flow_matching import FlowMatching

# --- ODE solvers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_fixed_step_convergence_order(method, order):
    y0 = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    exact = y0 * math.exp(-1.5)
    err = [
        (odeint(lambda t, y: -y * (1 + 0 * t), y0, 0.0, 1.5, method=method, steps=n) - exact).abs().max().item()
        for n in (8, 16)
    ]
    assert math.log2(err[0] / err[1]) == pytest.approx(order, abs=0.25)


def test_dopri5_accuracy_time_dependent_and_backwards():
    # dy/dt = cos(t) y  ->  y(t) = y0 exp(sin t)
    y0 = torch.tensor([[1.0], [-0.5]], dtype=torch.float64)
    f = lambda t, y: math.cos(t) * y  # noqa: E731
    y1 = odeint(f, y0, 0.0, 3.0, method="dopri5", atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(y1, y0 * math.exp(math.sin(3.0)), atol=1e-7, rtol=1e-7)
    back = odeint(f, y1, 3.0, 0.0, method="dopri5", atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(back, y0, atol=1e-7, rtol=1e-7)


def test_time_grid_power():
    g = time_grid(0.0, 1.0, 4, 2.0)
    assert g[0] == 0.0 and g[-1] == 1.0 and len(g) == 5
    steps = [b - a for a, b in zip(g[:-1], g[1:])]
    assert steps == sorted(steps, reverse=True)  # shrinking towards t1
    assert time_grid(0.0, 1.0, 4) == [0.0, 0.25, 0.5, 0.75, 1.0]


# --- exact oracles: analytic fields of a Gaussian target N(mu, s² I) ------------------------------------

MU, S = torch.tensor([0.3, -0.7]), 0.5


class _OTField(nn.Module):
    """The exact marginal OT velocity of N(mu, s² I) (sigma_min = 0), in FlowMatching's time input."""

    event_shape, context_features = (2,), 0

    def __init__(self):
        super().__init__()
        self.output = nn.Linear(1, 1)  # gives the module a device and dtype

    def embed_context(self, c):
        return None

    def forward(self, x, tau, context_embedding=None):
        t = (1.0 + 1e-3 - torch.exp(4 * tau)).unsqueeze(-1)  # invert tau = ln(1 + 1e-3 - t) / 4
        var = (1 - t) ** 2 + t**2 * S**2
        return MU + (x - t * MU) * (t * S**2 - (1 - t)) / var


class _GaussDenoiser(nn.Module):
    """F such that Diffusion.denoise is the exact posterior mean E[x0 | x_sigma] of N(mu, s² I)."""

    event_shape, context_features = (2,), 0

    def __init__(self):
        super().__init__()
        self.output = nn.Linear(1, 1)  # gives the module a device and dtype

    def embed_context(self, c):
        return None

    def forward(self, x_in, c_noise, context_embedding=None):
        sigma = torch.exp(4 * c_noise).unsqueeze(-1)
        c_in = 1 / torch.sqrt(sigma**2 + 1)
        x = x_in / c_in
        d = MU + S**2 / (S**2 + sigma**2) * (x - MU)
        c_skip, c_out = 1 / (sigma**2 + 1), sigma / torch.sqrt(sigma**2 + 1)
        return (d - c_skip * x) / c_out


def _exact_log_prob(z):
    return torch.distributions.Normal(MU, S).log_prob(z).sum(-1)


def test_flow_matching_change_of_variables_is_exact():
    m = FlowMatching(2, 0, network=_OTField(), sigma_min=0.0, gaussian_base=False)  # the net is the whole exact field
    z = torch.tensor([[0.3, -0.7], [1.0, 0.0], [-0.5, -1.5]])
    for trace in ("exact",):
        torch.testing.assert_close(m.log_prob(z, None, trace=trace), _exact_log_prob(z), atol=2e-4, rtol=1e-4)
    s = m.sample((20000,), None, generator=torch.Generator().manual_seed(0))
    assert (s.mean(0) - MU).abs().max() < 0.02 and (s.std(0) - S).abs().max() < 0.02


def test_diffusion_probability_flow_log_prob_is_exact():
    m = Diffusion(2, 0, network=_GaussDenoiser(), sigma_max=20.0)
    z = torch.tensor([[0.3, -0.7], [1.0, 0.0], [-0.5, -1.5]])
    torch.testing.assert_close(m.log_prob(z, None), _exact_log_prob(z), atol=5e-3, rtol=1e-3)
    for kw in ({}, {"sampler": "heun", "steps": 40}, {"sampler": "sde"}):
        s = m.sample((20000,), None, generator=torch.Generator().manual_seed(0), **kw)
        assert (s.mean(0) - MU).abs().max() < 0.02 and (s.std(0) - S).abs().max() < 0.02, kw


@pytest.mark.parametrize("scale", [0.5, 0.05])
def test_default_samplers_resolve_sharp_gaussians(scale, monkeypatch):
    """Default sampler settings on exact fields: the sample std of N(mu, scale² I) within 2.5%."""
    monkeypatch.setattr(__import__(__name__), "S", scale)
    fm = FlowMatching(2, 0, network=_OTField(), sigma_min=0.0, gaussian_base=False)
    df = Diffusion(2, 0, network=_GaussDenoiser())
    for m in (fm, df):
        s = m.sample((20000,), None, generator=torch.Generator().manual_seed(0))
        assert abs(s.std(0).mean().item() / scale - 1) < 0.025, m.name
        assert (s.mean(0) - MU).abs().max().item() < 0.03 * scale + 0.005, m.name


# --- cheap trained accuracy check (default suite) ----------------------------------------------------


@pytest.mark.parametrize("name", ["flow_matching", "diffusion"])
def test_learns_gaussian_posterior(name):
    """θ ~ N(0, I), x = θ + 0.5 ε  =>  θ | x ~ N(0.8 x, 0.2 I): moments and log_prob vs the closed form."""
    from physgen.models import build_model

    torch.manual_seed(0)
    m = build_model(name, 2, 2, hidden_features=64, num_blocks=2)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 600)
    for _ in range(600):
        th = torch.randn(256, 2, generator=g)
        x = th + 0.5 * torch.randn(256, 2, generator=g)
        loss = m.loss(th, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    m.eval()
    x = torch.tensor([[1.0, -0.5], [0.0, 1.5]])
    with torch.no_grad():
        s = m.sample((4000,), x, generator=torch.Generator().manual_seed(1))
        exact = torch.distributions.Normal(0.8 * x, math.sqrt(0.2))
        z = exact.sample((50,))
        lp, lp_exact = m.log_prob(z, x), exact.log_prob(z).sum(-1)
    assert (s.mean(0) - 0.8 * x).abs().max() < 0.06
    assert (s.std(0) - math.sqrt(0.2)).abs().max() < 0.04
    assert (lp - lp_exact).abs().mean() < 0.15


# --- C2ST targets (slow: 10,000 simulations, default fit_posterior) -----------------------------------


def _c2st_run(task_name: str, model: str, seed: int = 0) -> float:
    from physgen.data import SimulationSet, simulate
    from physgen.diagnostics import c2st
    from physgen.inference import fit_posterior
    from simulators.sbibm import get_task

    task = get_task(task_name)
    sims = simulate(task, 10_000, seed=0)  # as benchmarks/vf_vs_sbi.py
    post = fit_posterior(SimulationSet(sims.theta, sims.x, {}), model=model, prior=task.prior, device="cpu", seed=seed)
    x_obs = torch.zeros(2) if task_name == "two_moons" else simulate(task, 1, seed=12345).x[0]
    ref = task.reference_posterior(x_obs, 10_000, seed=0)
    return float(c2st(post.sample(10_000, x_obs, seed=0), ref, seed=0))


@pytest.mark.slow
@pytest.mark.parametrize(
    "task_name,model,bound",
    [
        ("two_moons", "flow_matching", 0.55),
        ("two_moons", "diffusion", 0.57),
        ("gaussian_linear", "flow_matching", 0.55),
        ("gaussian_linear", "diffusion", 0.55),
        # the speed setting (10 network calls per sample): measured 0.555 / 0.493, FMPE's default 0.75-0.81
        ("two_moons", "flow_matching_fast", 0.57),
        ("gaussian_linear", "flow_matching_fast", 0.55),
    ],
)
def test_c2st_targets(task_name, model, bound):
    # one training run's C2ST varies with its noise stream, through the epoch that the (noisy) validation loss
    # picks as best: flow_matching_fast on two moons 0.557-0.607 and flow matching on gaussian_linear 0.492-0.564
    # over training seeds 0-2 (docs/benchmarks.md), so each target holds on the median of three seeds
    seeds = (0, 1, 2)
    scores = sorted(_c2st_run(task_name, model, seed) for seed in seeds)
    print(f"C2ST {task_name} {model}: {scores}")
    assert scores[len(scores) // 2] <= bound
