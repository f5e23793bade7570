"""Neural likelihood estimation (physgen.fit_likelihood): accuracy on a closed-form posterior, the log density
handed to MCMC, save/load, and the non-convergence report."""

import math

import pytest
import torch

import physgen
from physgen.diagnostics import c2st
from physgen.inference import Likelihood
from simulators.sbibm import GaussianLinear, TwoMoons

SMALL = {"model_options": {"transforms": 3, "hidden_features": [64, 64]}, "max_epochs": 40}
FAST_MCMC = {"num_chains": 64, "burn_in": 200, "thin": 2, "max_steps": 2000}


@pytest.fixture(scope="module")
def gaussian():
    task = GaussianLinear(dim=3)
    lik = physgen.fit_likelihood(physgen.simulate(task, 3000, seed=0), seed=0, **SMALL)
    return task, lik


def test_recovers_closed_form_posterior(gaussian):
    task, lik = gaussian
    x_o = torch.tensor([0.3, -0.2, 0.1])
    res = lik.sample_posterior(x_o, 2000, seed=0, **FAST_MCMC)
    assert res.converged, res.messages
    assert res.samples.shape == (2000, 3)
    # closed form: N(x/2, 0.05 I)
    assert torch.allclose(res.samples.mean(0).float(), x_o / 2, atol=0.06), res.samples.mean(0)
    var = res.samples.var(0)
    assert bool(((var > 0.035) & (var < 0.07)).all()), var
    ref = task.reference_posterior(x_o, 2000, seed=1)
    assert c2st(ref, res.samples.float(), seed=0) < 0.62


def test_posterior_is_prior_plus_learned_likelihood():
    task = TwoMoons()  # a box prior: -inf outside, the network is not evaluated there
    lik = physgen.fit_likelihood(
        physgen.simulate(task, 500, seed=0), seed=0, max_epochs=2, model_options=SMALL["model_options"]
    )
    x_o = torch.tensor([0.1, 0.2])
    logp = lik.posterior(x_o)
    theta = torch.tensor([[0.2, -0.3], [1.5, 0.0], [0.0, -0.99]])
    out = logp(theta)
    assert out.shape == (3,)
    assert out[1] == -math.inf
    inside = theta[[0, 2]]
    expected = task.prior.log_prob(inside) + lik.log_likelihood(inside, x_o)
    assert torch.allclose(out[[0, 2]].float(), expected.float())
    # amortized: the same network at another observation gives another density
    assert not torch.allclose(lik.posterior(torch.tensor([-0.4, 0.3]))(inside).float(), out[[0, 2]].float())


def test_save_load_round_trip(gaussian, tmp_path):
    _, lik = gaussian
    path = lik.save(tmp_path / "lik.safetensors")
    back = physgen.load(path)
    assert isinstance(back, Likelihood) and back.kind == "likelihood"
    theta, x = torch.randn(7, 3) * 0.3, torch.randn(7, 3) * 0.4
    assert torch.equal(back.log_likelihood(theta, x), lik.log_likelihood(theta, x))
    assert torch.equal(back.prior.loc, lik.prior.loc)
    assert back.theta_range == lik.theta_range


def test_non_convergence_is_reported(gaussian):
    _, lik = gaussian
    with pytest.warns(RuntimeWarning, match="did not converge"):
        res = lik.sample_posterior(
            torch.zeros(3), 100, seed=0, num_chains=8, burn_in=0, thin=1, max_steps=150, ess_min=1e6
        )
    assert not res.converged
    assert "ESS" in res.messages
    assert res.samples.shape == (100, 3)  # the draws come back, flagged


def test_bad_input_errors(gaussian):
    _, lik = gaussian
    with pytest.raises(ValueError, match="one observation of shape"):
        lik.posterior(torch.zeros(2, 3))
    no_prior = Likelihood(lik.model, lik.encoder, 3, (3,))
    with pytest.raises(ValueError, match="pass prior="):
        no_prior.sample_posterior(torch.zeros(3), 10)
    fields = physgen.SimulationSet(torch.randn(20, 2), torch.randn(20, 1, 4, 4), {})
    with pytest.raises(ValueError, match="vector observations"):
        physgen.fit_likelihood(fields)


def test_tempered_start_weights_modes_by_mass():
    # posterior ∝ box prior × (0.8 N((-1.5, 0), 0.2²) + 0.2 N((1.5, 0), 0.05²)): the small mode has the higher
    # peak (0.2/0.05² > 0.8/0.2²); random-walk chains never cross, so the start must give it its 20% of the mass
    from physgen.inference.tempered_start import tempered_start
    from physgen.priors import BoxUniform

    prior = BoxUniform(-3 * torch.ones(2), 3 * torch.ones(2))

    def log_lik(t):
        a = torch.distributions.Normal(torch.tensor([-1.5, 0.0]), 0.2).log_prob(t.float()).sum(-1) + math.log(0.8)
        b = torch.distributions.Normal(torch.tensor([1.5, 0.0]), 0.05).log_prob(t.float()).sum(-1) + math.log(0.2)
        return torch.logaddexp(a, b)

    pts = tempered_start(prior, log_lik, 2000, generator=torch.Generator().manual_seed(0))
    assert pts.shape == (2000, 2)
    share = float((pts[:, 0] > 0).double().mean())
    assert abs(share - 0.2) < 0.06, share
    assert abs(float(pts[pts[:, 0] > 0, 0].std()) - 0.05) < 0.02  # the narrow mode keeps its width


def test_init_continues_training_a_copy_with_its_standardization(gaussian):
    task, lik = gaussian
    before = {k: v.clone() for k, v in lik.state_dict().items()}
    more = physgen.simulate(task, 500, seed=7)
    more.theta[0] = torch.tensor([2.5, 0.0, 0.0])  # beyond the first data's θ box
    more.x[0] = task.simulate(more.theta[:1], generator=torch.Generator().manual_seed(0))[0]
    cont = physgen.fit_likelihood(more, init=lik, seed=1, max_epochs=2)
    assert all(torch.equal(v, lik.state_dict()[k]) for k, v in before.items())  # init is not changed
    assert torch.equal(cont.target_shift, lik.target_shift) and torch.equal(cont.target_scale, lik.target_scale)
    assert not torch.equal(cont.state_dict()["model." + next(iter(lik.model.state_dict()))],
                           before["model." + next(iter(lik.model.state_dict()))])  # trained on
    assert len(cont.fit_result.history) == 2
    assert cont.theta_range[1][0] == pytest.approx(2.5) and lik.theta_range[1][0] < 2.5
    with pytest.raises(ValueError, match="leave model and model_options unset"):
        physgen.fit_likelihood(more, init=lik, model_options={"transforms": 2})
    with pytest.raises(ValueError, match=r"init is a likelihood of x \(3,\)"):
        physgen.fit_likelihood(physgen.simulate(GaussianLinear(dim=2), 50, seed=0), init=lik)
    with pytest.raises(TypeError, match="init must be a trained Likelihood"):
        physgen.fit_likelihood(more, init=lik.model)
