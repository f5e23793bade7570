"""Encoders by name (physgen.nn.registry), [encoder] in workflows, and exact references in validate."""

from __future__ import annotations

import pytest
import torch
from physgen.priors import BoxUniform

import physgen
from physgen.nn import ConcatEncoder, build_encoder, check_accepts, encoder_for


def test_encoder_for_takes_the_shape_from_the_data():
    cnn = encoder_for("cnn", (16, 16), periodic=True, out_features=8)
    assert cnn.config["field_shape"] == [16, 16] and cnn.config["periodic"] and cnn.out_features == 8
    sets = encoder_for("deepsets", (50, 3))
    assert sets.config["point_dim"] == 2
    with pytest.raises(ValueError, match=r"takes .*field_shape.* from the data"):
        encoder_for("cnn", (16, 16), field_shape=[8, 8])
    with pytest.raises(ValueError, match="unknown encoder 'nope'"):
        encoder_for("nope", (4,))
    with pytest.raises(ValueError, match=r"encoder 'cnn'.*unexpected keyword"):
        encoder_for("cnn", (16, 16), not_an_option=1)


def test_a_cnn_on_point_sets_is_refused_naming_the_encoders_that_fit():
    with pytest.raises(ValueError, match=r"takes field or lattice data.*points data.*deepsets"):
        check_accepts("cnn", "points", (100, 3))
    check_accepts("cnn", "field", (16, 16))
    check_accepts("cnn", None, (100, 3))  # unknown kind: names only


def test_concatenation_standardises_each_part_and_round_trips():
    torch.manual_seed(0)
    enc = encoder_for("cnn+cnn", (8, 8), cnn={"out_features": 4})
    assert isinstance(enc, ConcatEncoder) and enc.out_features == 8
    x = 3.0 * torch.randn(20, 8, 8) + 2.0
    enc.standardize_from(x)
    assert float(enc.shift0) == pytest.approx(float(x.mean()), rel=1e-5)
    rebuilt = build_encoder("concat", **enc.config)
    rebuilt.load_state_dict(enc.state_dict())
    torch.testing.assert_close(rebuilt(x), enc(x))
    with pytest.raises(ValueError, match="given per part"):
        encoder_for("cnn+cnn", (8, 8), out_features=4)


def test_fit_posterior_builds_a_named_encoder_and_saves_it(tmp_path):
    torch.manual_seed(0)
    theta = torch.rand(256, 1)
    x = theta[:, :, None] + 0.1 * torch.randn(256, 8, 8)
    data = physgen.SimulationSet(theta, x)
    post = physgen.fit_posterior(data, encoder="cnn", encoder_options={"out_features": 4, "channels": [4]},
                                 max_epochs=1, batch_size=64, seed=0)
    assert post.encoder.name == "cnn" and post.encoder.out_features == 4
    post.save(tmp_path / "p.safetensors")
    again = physgen.load(tmp_path / "p.safetensors")
    torch.testing.assert_close(again.log_prob(theta[:5], x[:5]), post.log_prob(theta[:5], x[:5]))
    with pytest.raises(ValueError, match="encoder_options apply to an encoder given by name"):
        physgen.fit_posterior(data, encoder_options={"out_features": 4}, max_epochs=1)


def test_workflow_with_an_encoder_that_does_not_fit_fails_before_simulating(tmp_path):
    from physgen.config import ConfigError

    cfg = tmp_path / "bad.toml"
    cfg.write_text('[simulator]\nname = "thomas_process"\n[simulation]\nn = 100\n[encoder]\nname = "cnn"\n')
    with pytest.raises(ConfigError, match=r"\[encoder\] encoder 'cnn' takes field or lattice data.*points"):
        physgen.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "simulations").exists()


class _Shift:
    """x = θ + 0.5 ε, θ ~ U(-3, 3): its exact posterior is a normal truncated to the prior box."""

    def __init__(self):
        self.prior = BoxUniform(torch.tensor([-3.0]), torch.tensor([3.0]))
        self.x_shape = (1,)

    def simulate(self, theta, *, generator=None):
        return theta + 0.5 * torch.randn(theta.shape, generator=generator)

    def exact_posterior(self, x, num_samples, *, seed):
        g = torch.Generator().manual_seed(seed)
        out = torch.empty(0, 1)
        while len(out) < num_samples:
            d = x.reshape(1, 1) + 0.5 * torch.randn(4 * num_samples, 1, generator=g)
            out = torch.cat([out, d[(d.abs() < 3).all(-1)]])
        return out[:num_samples]


def test_validate_uses_the_exact_posterior_and_reports_widths():
    sim = _Shift()
    theta = sim.prior.sample((3000,))
    data = physgen.SimulationSet(theta, sim.simulate(theta))
    post = physgen.fit_posterior(data, prior=sim.prior, max_epochs=30, seed=0)
    report = physgen.validate(post, sim, num_test=100, num_posterior_samples=300, observations=3, seed=0)
    obs = report.metrics["observations"]
    assert all(o["reference"]["converged"] for o in obs)
    assert 0.4 <= report.metrics["c2st_mean"] <= 0.65
    ratio = report.metrics["std_ratio_mean"][0]
    assert 0.8 < ratio < 1.25, ratio
    assert report.metrics["posterior_std_mean"][0] == pytest.approx(0.5, rel=0.25)
    with pytest.raises(ValueError, match="reference='exact' needs a simulator with exact_posterior"):
        physgen.validate(post, _NoExact(), reference="exact")


class _NoExact(_Shift):
    exact_posterior = None

    def __getattribute__(self, name):
        if name == "exact_posterior":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_heavy_tailed_fields_do_not_warn_but_a_field_out_of_range_does():
    """Global standardisation: a heavy-tailed field's brightest pixel lies > 10 σ out in ordinary data (no
    warning); a field scaled out of the training range warns."""
    import warnings

    torch.manual_seed(0)
    theta = torch.rand(256, 1)
    x = torch.exp(1.5 * torch.randn(256, 8, 8)) * (1 + theta[:, :, None])  # lognormal pixels: long upper tail
    data = physgen.SimulationSet(theta, x)
    post = physgen.fit_posterior(data, encoder="cnn", encoder_options={"out_features": 4, "channels": [4]},
                                 max_epochs=1, batch_size=64, seed=0)
    assert post.context_standardization == "global"
    z_max = float(((x - post.context_shift) / post.context_scale).abs().amax(dim=(1, 2)).max())
    assert z_max > 10  # the old per-pixel criterion would have warned on training data itself
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        post.sample(10, x[:8])
    with pytest.warns(UserWarning, match="root-mean-square .* training standard deviations"):
        post.sample(10, x[0] * 1e3)
