"""Posterior contract: shapes, support, bad input, save/load; accuracy against exact posteriors."""

import math

import pytest
import torch

import physgen
from physgen.data import SimulationSet
from physgen.io import CheckpointError
from physgen.priors import BoxUniform


def linear_gaussian(n, seed=0):
    """θ ~ U(-2, 2)^2, x = θ + 0.3 ε (x has 3 features: θ1, θ2, θ1 - θ2)."""
    g = torch.Generator().manual_seed(seed)
    prior = BoxUniform([-2.0, -2.0], [2.0, 2.0])
    theta = -2 + 4 * torch.rand(n, 2, generator=g)
    x = torch.cat([theta, theta[:, :1] - theta[:, 1:]], -1) + 0.3 * torch.randn(n, 3, generator=g)
    from physgen.priors import prior_to_dict

    return SimulationSet(theta, x, {"prior": prior_to_dict(prior)}), prior


@pytest.fixture(scope="module")
def small_posterior():
    data, _ = linear_gaussian(2000)
    return physgen.fit_posterior(data, max_epochs=30, model_options={"transforms": 2, "hidden_features": [32, 32]})


def test_sample_shapes_and_support(small_posterior):
    post = small_posterior
    x1 = torch.zeros(3)
    xb = torch.zeros(4, 3)
    assert post.sample(7, x1, seed=0).shape == (7, 2)
    s = post.sample(7, xb, seed=0)
    assert s.shape == (7, 4, 2)
    assert torch.equal(s, post.sample(7, xb, seed=0))
    big = post.sample(20_000, torch.tensor([1.9, 1.9, 0.0]), seed=1)
    assert bool(((big > -2) & (big < 2)).all())


def test_log_prob_shapes_and_outside_support(small_posterior):
    post = small_posterior
    theta = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.5, -0.5]])
    lp = post.log_prob(theta, torch.zeros(3))
    assert lp.shape == (3,) and lp[1] == -math.inf and torch.isfinite(lp[[0, 2]]).all()
    assert post.log_prob(torch.zeros(5, 4, 2), torch.zeros(4, 3)).shape == (5, 4)


def test_wrong_x_shape_names_expected_and_given(small_posterior):
    with pytest.raises(ValueError, match=r"x has shape \(4,\).*event shape \(3,\)"):
        small_posterior.sample(5, torch.zeros(4))
    with pytest.raises(ValueError, match=r"theta has shape"):
        small_posterior.log_prob(torch.zeros(3), torch.zeros(3))


def test_log_prob_normalised_on_the_box(small_posterior):
    g = torch.linspace(-2, 2, 401)[:-1] + 0.005
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        p = small_posterior.log_prob(grid, torch.tensor([0.5, -0.3, 0.8])).exp()
    assert abs(float(p.sum() * 0.01**2) - 1.0) < 0.02


def test_save_load_identical(tmp_path, small_posterior):
    path = small_posterior.save(tmp_path / "p.safetensors")
    back = physgen.load(path)
    x = torch.randn(3)
    assert torch.equal(back.sample(100, x, seed=3), small_posterior.sample(100, x, seed=3))
    theta = torch.rand(10, 2)
    assert torch.allclose(back.log_prob(theta, x), small_posterior.log_prob(theta, x))


def test_load_rejects_corrupted_file(tmp_path, small_posterior):
    path = small_posterior.save(tmp_path / "p.safetensors")
    raw = bytearray(path.read_bytes())
    raw[20:60] = b"\xff" * 40
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        physgen.load(path)


def test_rejection_mode_reports_acceptance(small_posterior):
    data, prior = linear_gaussian(2000)
    post = physgen.fit_posterior(data, transform="none", max_epochs=5, model_options={"transforms": 1})
    s = post.sample(500, torch.tensor([1.9, 1.9, 0.0]), seed=0)
    assert s.shape == (500, 2) and bool(prior.support.check(s).all())
    assert 0 < post.acceptance_rate <= 1


def test_gaussian_posterior_accuracy():
    """Unbounded Gaussian prior, linear Gaussian simulator: the exact posterior is Gaussian."""
    from physgen.diagnostics import c2st
    from physgen.priors import MultivariateNormal, prior_to_dict

    g = torch.Generator().manual_seed(0)
    D, n = 3, 5000
    prior = MultivariateNormal(torch.zeros(D), torch.eye(D))
    theta = torch.randn(n, D, generator=g)
    x = theta + 0.5 * torch.randn(n, D, generator=g)
    post = physgen.fit_posterior(SimulationSet(theta, x, {"prior": prior_to_dict(prior)}), max_epochs=60)
    x_o = torch.tensor([0.3, -1.0, 1.5])
    # posterior: N(x / (1 + 0.25), 0.25 / 1.25 I)
    ref = x_o / 1.25 + math.sqrt(0.2) * torch.randn(5000, D, generator=g)
    score = c2st(ref, post.sample(5000, x_o, seed=0))
    assert score < 0.56, score


def test_format1_file_from_before_gaussian_base_loads(tmp_path):
    """A format-1 flow-matching file written before ``gaussian_base`` existed (no key, no baseline buffers) loads
    without the baseline, as it was written (the format-1 upgrade fills options added later with their old value)."""
    from pathlib import Path

    from physgen.io import load_file, save_file

    tensors, meta = load_file(Path(__file__).parent / "data" / "posterior_format1_flow_matching.safetensors")
    del meta["config"]["model"]["config"]["gaussian_base"]
    tensors = {k: v for k, v in tensors.items() if not k.startswith("model.gaussian.")}
    save_file(tmp_path / "old.safetensors", tensors, kind="posterior", config=meta["config"])
    post = physgen.load(tmp_path / "old.safetensors")
    assert post.model.gaussian is None and post.model.config["gaussian_base"] is False
    assert post.sample(3, torch.tensor([0.1, -0.2]), seed=0).shape == (3, 2)


@pytest.mark.parametrize("model", ["nsf", "flow_matching"])
def test_same_seed_same_posterior(model):
    """The seed fixes the initial weights too: two fits in one process agree exactly, whatever the global RNG did
    in between, and the caller's RNG stream is left as it was."""
    data, _ = linear_gaussian(600)
    opts = dict(model=model, max_epochs=2, model_options={"hidden_features": 16} if model != "nsf" else
                {"transforms": 2, "hidden_features": [16, 16]})
    a = physgen.fit_posterior(data, seed=3, **opts)
    torch.randn(100)  # the global RNG moves on
    state = torch.get_rng_state()
    b = physgen.fit_posterior(data, seed=3, **opts)
    assert torch.equal(torch.get_rng_state(), state)
    c = physgen.fit_posterior(data, seed=4, **opts)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_rejection_mode_log_prob_is_normalised_on_the_support():
    """transform="none": near a corner of the box the model puts mass outside; log_prob is renormalised by the
    model's mass inside the support (quadrature over the box ≈ 1; without the correction it is not)."""
    from physgen.priors import prior_to_dict

    g = torch.Generator().manual_seed(0)
    prior = BoxUniform([-2.0, -2.0], [2.0, 2.0])
    theta = -2 + 4 * torch.rand(3000, 2, generator=g)
    x = theta + 0.5 * torch.randn(3000, 2, generator=g)
    data = SimulationSet(theta, x, {"prior": prior_to_dict(prior)})
    post = physgen.fit_posterior(data, transform="none", max_epochs=20,
                                 model_options={"transforms": 2, "hidden_features": [32, 32]})
    n = 300
    centres = torch.linspace(-2, 2, n + 1)[:-1] + 2 / n
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    x_o = torch.tensor([1.9, 1.9])
    cell = (4 / n) ** 2
    with torch.no_grad():
        mass = float(post.log_prob(grid, x_o).exp().sum() * cell)
        raw = float(post.log_prob(grid, x_o, normalize=False).exp().sum() * cell)
    assert abs(mass - 1) < 0.03, mass
    assert raw < 0.9, raw
    post.sample(1000, x_o, seed=0)
    assert post.acceptance_rate == pytest.approx(raw, abs=0.05)
    # the estimate is reused for the same observation and weights, and redone after the weights change
    calls = []
    draw = post._draw
    post._draw = lambda *a: calls.append(1) or draw(*a)
    post.log_prob(torch.zeros(2), x_o)
    assert not calls
    with torch.no_grad():
        post.model.flow.transform.transforms[-1].hyper[-1].bias.add_(0.1)
    post.log_prob(torch.zeros(2), x_o)
    assert calls
    del post._draw
    # one estimate per distinct observation, broadcast back
    xb = torch.stack([x_o, torch.zeros(2), x_o])
    lp = post.log_prob(torch.zeros(3, 2), xb)
    torch.testing.assert_close(lp[0], lp[2])
    torch.testing.assert_close(lp[1], post.log_prob(torch.zeros(2), torch.zeros(2)))


def test_rejection_draws_only_what_is_missing(small_posterior, monkeypatch):
    """After the first round the sampler draws what the observations still lack at the acceptance rate seen so
    far, not n again: the total drawn stays close to n / acceptance."""
    post = small_posterior
    assert post.transform == "none"  # the flows' default
    drawn = []
    draw = post._draw
    monkeypatch.setattr(post, "_draw", lambda n, *a: drawn.append(n) or draw(n, *a))
    n = 4000
    s = post.sample(n, torch.tensor([1.9, 1.9, 0.0]), seed=0)
    assert s.shape == (n, 2) and bool(post.prior.support.check(s).all())
    rate = post.acceptance_rate
    assert rate < 0.99, rate  # the corner of the box: some rejections, so more than one round
    assert len(drawn) >= 2 and sum(drawn) <= 1.25 * n / rate + 100, (drawn, rate)


def test_rejection_never_hangs(small_posterior, monkeypatch):
    """A posterior whose proposals all fall outside the prior box: sampling stops (at max_time, or once an
    observation has accepted none of REJECTION_GIVE_UP draws) with a SamplingError that reports the acceptance,
    instead of looping for ever."""
    import time

    from physgen.inference import SamplingError

    post = small_posterior
    monkeypatch.setattr(post, "_draw", lambda n, c, *a: torch.full((n, *c.shape[:-1], 2), 10.0))
    t0 = time.perf_counter()
    with pytest.raises(SamplingError, match=r"accepted (only 0.00e\+00 .*max_time=0.2s|none of \d+ proposals)"):
        post.sample(100, torch.zeros(3), max_time=0.2)
    assert time.perf_counter() - t0 < 5
    assert post.acceptance_rate == 0.0
