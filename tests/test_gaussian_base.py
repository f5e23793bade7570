"""The linear-Gaussian warm start: least squares, closed-form fields, and models that start as the fit."""

import math

import pytest
import torch
from torch import nn

from physgen.models import build_model
from physgen.models._gaussian import LinearGaussian, least_squares
from physgen.train import fit


def gaussian_data(n=20_000, dim=3, cdim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, cdim, generator=g)
    w = torch.randn(dim, cdim, generator=g)
    b = torch.randn(dim, generator=g)
    a = torch.randn(dim, dim, generator=g) * 0.3 + torch.eye(dim) * 0.5
    z = c @ w.T + b + torch.randn(n, dim, generator=g) @ a.T
    return z, c, w, b, a @ a.T


def test_least_squares_recovers_linear_gaussian():
    z, c, w, b, cov = gaussian_data()
    w_hat, b_hat, cov_hat = least_squares(z, c)
    assert torch.allclose(w_hat, w, atol=0.02) and torch.allclose(b_hat, b, atol=0.02)
    assert torch.allclose(cov_hat, cov, atol=0.03)
    _, b0, cov0 = least_squares(z, None)  # no context: mean and covariance
    assert torch.allclose(b0, z.mean(0), atol=1e-5)
    assert torch.allclose(cov0, torch.cov(z.T), atol=1e-4)


def test_denoiser_is_gaussian_conditioning():
    z, c, *_ = gaussian_data(dim=3)
    g = LinearGaussian(3, 2)
    g.fit(z, c)
    s = (g.eigvecs * g.eigvals) @ g.eigvecs.T
    x = torch.randn(7, 3, dtype=torch.float32)
    m = g.mean(c[:7], x)
    for sigma in (0.01, 0.7, 30.0):
        expect = m + (x - m) @ (s @ torch.linalg.inv(s + sigma**2 * torch.eye(3))).T
        assert torch.allclose(g.denoise(x, sigma, m), expect, atol=1e-5)
        assert torch.allclose(g.denoise(x, torch.full((7,), sigma), m), expect, atol=1e-5)


def test_velocity_transports_noise_to_the_gaussian():
    """Integrating the closed-form OT field from N(0, I) gives N(m, S): mean and covariance to MC accuracy."""
    z, c, *_ = gaussian_data(dim=2)
    g = LinearGaussian(2, 2)
    g.fit(z, c)
    s_true = (g.eigvecs * g.eigvals) @ g.eigvecs.T
    m = g.mean(c[:1], z[:1])
    x = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g.double()
    steps = 400
    for i in range(steps):  # RK4
        t, h = i / steps, 1.0 / steps
        k1 = g.velocity(x, t, m.double(), 1.0)
        k2 = g.velocity(x + h / 2 * k1, t + h / 2, m.double(), 1.0)
        k3 = g.velocity(x + h / 2 * k2, t + h / 2, m.double(), 1.0)
        k4 = g.velocity(x + h * k3, t + h, m.double(), 1.0)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert torch.allclose(x.mean(0), m.double()[0], atol=0.01)
    assert torch.allclose(torch.cov(x.T), s_true.double(), atol=0.01)


@pytest.mark.parametrize("name", ["nsf", "maf", "flow_matching", "diffusion"])
def test_warm_started_model_is_the_least_squares_gaussian(name):
    """Before any training step, a warm-started model's density is the fitted Gaussian's."""
    torch.manual_seed(0)
    z, c, *_ = gaussian_data(n=5000, dim=2)
    model = build_model(name, 2, 2)
    model.warm_start(z, c)
    model.eval()
    w, b, cov = least_squares(z, c)
    ref = torch.distributions.MultivariateNormal(c[:64] @ w.T + b, cov)
    lp = model.log_prob(z[:64], c[:64]).detach()
    tol = 1e-4 if name in ("nsf", "maf") else 5e-3  # ODE families: solver tolerance
    assert torch.allclose(lp, ref.log_prob(z[:64]), atol=tol)


class _WarmQuadratic(nn.Module):
    """loss = (p - 1)²; warm_start sets the optimum; a huge lr then makes every epoch worse."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def warm_start(self, x):
        with torch.no_grad():
            self.p.fill_(1.0)

    def loss(self, x):
        return (self.p - 1.0 + 0.1 * x.mean()) ** 2


def test_fit_keeps_a_warm_start_that_training_cannot_beat():
    x = torch.randn(400, 1, generator=torch.Generator().manual_seed(0))
    m = _WarmQuadratic()
    res = fit(m, (x,), lr=10.0, max_epochs=50, patience=3, progress=False, clip_norm=None, schedule=None)
    assert res.best_epoch == -1 and res.stopped == "early_stopping" and res.epochs == 3
    assert m.p.item() == 1.0
    assert math.isfinite(res.best_val_loss) and res.best_val_loss < min(h["val_loss"] for h in res.history)
