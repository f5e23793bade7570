import math

import pytest
import torch

from physgen.priors import (
    BoxUniform,
    Joint,
    LogNormal,
    LogUniform,
    MultivariateNormal,
    prior_from_dict,
    prior_to_dict,
    sample_prior,
    to_unconstrained,
)

PRIORS = {
    "box": lambda: BoxUniform([-1.0, 0.0], [1.0, 3.0]),
    "loguniform": lambda: LogUniform([0.1, 1.0], [10.0, 2.0]),
    "lognormal": lambda: LogNormal([math.log(0.4), -3.0], [0.5, 0.2]),
    "mvn": lambda: MultivariateNormal(torch.tensor([1.0, -1.0]), torch.tensor([[2.0, 0.5], [0.5, 1.0]])),
    "joint": lambda: Joint([BoxUniform([-1.0], [1.0]), LogUniform([0.5], [4.0]), MultivariateNormal(torch.zeros(1), torch.eye(1))]),
}


@pytest.mark.parametrize("name", PRIORS)
def test_bijection_roundtrip_and_logdet(name):
    prior = PRIORS[name]()
    T = to_unconstrained(prior)
    u = torch.randn(50, prior.event_shape[0], dtype=torch.float64) * 2
    theta = T(u)
    assert bool(prior.support.check(theta).all())
    assert torch.allclose(T.inv(theta), u, atol=1e-6)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda z: T(z), u[i])
        assert torch.allclose(torch.slogdet(jac)[1], T.log_abs_det_jacobian(u[i], theta[i]), atol=1e-8)


@pytest.mark.parametrize("name", PRIORS)
def test_sample_with_generator_is_reproducible_and_correct(name):
    prior = PRIORS[name]()
    g = torch.Generator().manual_seed(0)
    s = sample_prior(prior, (200_000,), generator=g)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(s, sample_prior(prior, (200_000,), generator=g))
    ref = prior.sample((200_000,))
    assert torch.allclose(s.mean(0), ref.mean(0), atol=0.03)
    assert torch.allclose(s.std(0), ref.std(0), rtol=0.03)


@pytest.mark.parametrize("name", ["box", "loguniform", "joint"])
def test_log_prob_outside_support_is_minus_inf(name):
    prior = PRIORS[name]()
    bad = torch.full((3, prior.event_shape[0]), 100.0)
    assert torch.all(prior.log_prob(bad) == -math.inf)


def test_lognormal_support_density_and_errors():
    prior = PRIORS["lognormal"]()
    bad = torch.tensor([[0.0, 1.0], [1.0, -2.0], [float("nan"), 1.0]])
    assert torch.all(prior.log_prob(bad) == -math.inf)
    theta = torch.tensor([[0.3, 0.05]])
    # log-normal density: N(log θ; loc, scale) / θ, per coordinate
    ref = sum(
        torch.distributions.Normal(m, s).log_prob(torch.log(t)) - torch.log(t)
        for t, m, s in zip(theta[0], [math.log(0.4), -3.0], [0.5, 0.2])
    )
    torch.testing.assert_close(prior.log_prob(theta)[0], ref)
    assert isinstance(to_unconstrained(prior), torch.distributions.transforms.ExpTransform) or "Exp" in repr(
        to_unconstrained(prior)
    )
    with pytest.raises(ValueError, match="scale > 0"):
        LogNormal([0.0], [0.0])
    with pytest.raises(ValueError, match="one shape"):
        LogNormal([0.0, 1.0], [1.0])


def test_loguniform_normalised():
    prior = LogUniform([0.1], [10.0])
    x = torch.linspace(0.1, 10.0, 200_001, dtype=torch.float64).unsqueeze(-1)
    integral = torch.trapezoid(prior.log_prob(x).exp(), x[:, 0])
    assert abs(float(integral) - 1.0) < 1e-4


@pytest.mark.parametrize("name", PRIORS)
def test_json_roundtrip(name):
    prior = PRIORS[name]()
    back = prior_from_dict(prior_to_dict(prior))
    theta = prior.sample((10,))
    assert torch.allclose(prior.log_prob(theta), back.log_prob(theta))


def test_bad_bounds_are_clear_errors():
    with pytest.raises(ValueError, match="high must exceed"):
        BoxUniform([1.0], [0.0])
    with pytest.raises(ValueError, match="low > 0"):
        LogUniform([0.0], [1.0])
