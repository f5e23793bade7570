"""GAN and VAE baselines (physgen.models.gan, physgen.models.vae): shapes, training through fit / fit_emulator,
save and load, no log_prob, the VAE's bounds, and divergence handling (a critic that wins, NaN in training)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import physgen
from physgen.data import SimulationSet
from physgen.models import build_model
from physgen.models.gan import GAN, gan_optimizers
from physgen.train import TrainingError


def small(name: str, event_shape=(16, 16), context_dim: int = 2, **options):
    torch.manual_seed(0)
    return build_model(name, event_shape, context_dim, channels=(16, 8), latent_dim=8, embedding=8, **options)


def field_data(n: int = 96, size: int = 16, seed: int = 0) -> SimulationSet:
    """Fields whose amplitude follows θ_0 and whose smoothness follows θ_1 (cheap, periodic)."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(n, 2, generator=g)
    white = torch.randn(n, size, size, generator=g)
    k = torch.fft.fftfreq(size)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    smooth = torch.exp(-k2 * (10 + 30 * theta[:, 1, None, None]))
    x = torch.fft.ifft2(torch.fft.fft2(white) * smooth).real * (1 + theta[:, 0, None, None]) * 5
    return SimulationSet(theta=theta, x=x, meta={})


@pytest.mark.parametrize("name", ["gan", "vae"])
@pytest.mark.parametrize("event_shape", [(16, 16), (2, 16, 8)])
def test_shapes_and_loss(name, event_shape):
    model = small(name, event_shape)
    c = torch.randn(5, 2)
    x = torch.randn(5, *event_shape)
    loss = model.loss(x, c, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    model.eval()
    assert model.sample((3,), c).shape == (3, 5, *event_shape)
    assert model.sample((4,), c[0]).shape == (4, *event_shape)
    g1, g2 = (torch.Generator().manual_seed(1) for _ in range(2))
    assert torch.equal(model.sample((2,), c, generator=g1), model.sample((2,), c, generator=g2))
    assert not hasattr(model, "log_prob")


@pytest.mark.parametrize("name", ["gan", "vae"])
def test_fields_only_with_a_named_error(name):
    with pytest.raises(ValueError, match=r"fields \(H, W\) or \(C, H, W\)"):
        build_model(name, (10,), 2)
    with pytest.raises(ValueError, match="multiples of"):
        build_model(name, (12, 12), 2, channels=(8, 8, 8))


def test_vae_bounds_are_bounds():
    model = small("vae").eval()
    x, c = torch.randn(6, 16, 16), torch.randn(6, 2)
    g = torch.Generator().manual_seed(0)
    elbo = torch.stack([model.elbo(x, c, generator=g) for _ in range(32)]).mean(0)
    iw = model.log_prob_lower_bound(x, c, num_samples=64, generator=g)
    assert elbo.shape == iw.shape == (6,)
    assert bool((iw >= elbo - 1e-3 * elbo.abs()).all())  # the importance-weighted bound is the tighter one


@pytest.mark.parametrize("name", ["gan", "vae"])
def test_fit_emulator_save_load(name, tmp_path):
    data = field_data()
    emu = physgen.fit_emulator(data, model=name, model_options={"channels": [16, 8], "latent_dim": 8, "embedding": 8},
                               max_epochs=2, batch_size=32, progress=False)
    assert emu.fit_result.epochs == 2 and math.isfinite(emu.fit_result.best_val_loss)
    theta = torch.tensor([0.5, 0.5])
    x = emu.sample(4, theta, seed=3)
    assert x.shape == (4, 16, 16) and torch.isfinite(x).all()
    path = emu.save(tmp_path / f"{name}.safetensors")
    back = physgen.load(path)
    assert isinstance(back, physgen.Emulator)
    assert torch.equal(back.sample(4, theta, seed=3), x)
    with pytest.raises(NotImplementedError, match="no log_prob"):
        back.log_prob(x, theta)


def test_gan_trains_through_training_step_with_two_optimizers():
    gan = small("gan")
    x, c = torch.randn(64, 16, 16), torch.randn(64, 2)
    before = {k: v.clone() for k, v in gan.state_dict().items()}
    res = physgen.fit(gan, (x, c), optimizer=gan_optimizers(), max_epochs=2, batch_size=32, progress=False)
    assert res.epochs == 2
    moved = [k for k, v in gan.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("generator.") for k in moved) and any(k.startswith("critic.") for k in moved)


def test_a_critic_that_wins_stops_training_and_keeps_the_best_epoch():
    data = field_data(128)
    gan = small("gan", lr_generator=1e-7, lr_discriminator=3e-2, divergence_loss=2.0, divergence_steps=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emu = physgen.fit_emulator(data, model=gan, max_epochs=30, batch_size=16, progress=False)
    assert emu.fit_result.stopped == "callback" and emu.fit_result.epochs < 30
    text = " ".join(str(w.message) for w in caught)
    assert "diverged" in text and "best epoch" in text and "lr_discriminator" in text


def test_nan_in_training_raises_and_restores_the_best_weights(tmp_path):
    data = field_data(128)
    gan: GAN = small("gan")
    calls = {"n": 0}

    def poison(module, inputs, output):  # from the 12th generator call on, the generator outputs NaN
        calls["n"] += 1
        return output * float("nan") if calls["n"] > 12 else output

    gan.generator.register_forward_hook(poison)
    with pytest.raises(TrainingError, match=r"non-finite.*best validated epoch.*lr_generator"):
        physgen.fit_emulator(data, model=gan, max_epochs=20, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    assert gan._best is not None
    state = gan.state_dict()
    assert all(torch.equal(state[k], v) for k, v in gan._best[1].items())
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert (tmp_path / "checkpoint.safetensors").exists()
