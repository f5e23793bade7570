"""Contract of the conditional estimator, parametrized over every family x target kind.

Vector targets for every family, as a Posterior (θ | x) and as an Emulator (x | θ); 2D field targets
(1 x 16 x 16 here, any even size works) for flow matching and diffusion with the U-Net, as an Emulator:
shapes, batching, the loss falls on a tiny problem, save/load round trip bit for bit. Bad input: a field
given to a vector-only family, and files of the previous format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import physgen
from physgen.data import SimulationSet
from physgen.io import CheckpointError, load_file, save_file
from physgen.priors import BoxUniform

DATA = Path(__file__).parent / "data"
VECTOR_FAMILIES = {
    "nsf": {"transforms": 2, "hidden_features": [16, 16]},
    "maf": {"transforms": 2, "hidden_features": [16, 16]},
    "flow_matching": {"hidden_features": 16, "num_blocks": 1},
    "flow_matching_fast": {"hidden_features": 16, "num_blocks": 1},
    "diffusion": {"hidden_features": 16, "num_blocks": 1},
}
FIELD_FAMILIES = {
    "flow_matching": {"channels": [8, 16], "embedding_features": 32, "groups": 4, "periodic": True},
    "diffusion": {"channels": [8, 16], "embedding_features": 32, "groups": 4},
}
FAST = {"max_epochs": 8, "batch_size": 64, "ema": None, "schedule": None, "patience": 100, "validation_fraction": 0.25}


def _vector_data(n: int = 256) -> SimulationSet:
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(n, 2, generator=g) * 2 - 1
    x = torch.cat([theta + 0.1 * torch.randn(n, 2, generator=g), theta.sum(-1, keepdim=True)], -1)
    prior = BoxUniform(-torch.ones(2), torch.ones(2))
    from physgen.priors import prior_to_dict

    return SimulationSet(theta, x, {"prior": prior_to_dict(prior)})


def _field_data(n: int = 96, size: int = 16) -> SimulationSet:
    """x = a smooth field with amplitude θ₀ and offset θ₁ plus a little noise: (n, 1, size, size)."""
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(n, 2, generator=g) + 0.5
    grid = torch.linspace(0, 2 * torch.pi, size + 1)[:-1]
    base = torch.sin(grid)[:, None] * torch.cos(grid)[None, :]
    x = theta[:, :1, None, None] * base + theta[:, 1:, None, None] + 0.05 * torch.randn(n, 1, size, size, generator=g)
    return SimulationSet(theta, x, {})


def _assert_loss_falls(est, name: str) -> None:
    """The validation loss (fixed noise in eval mode, so epochs compare like with like) falls during training."""
    val = [h["val_loss"] for h in est.fit_result.history]
    assert min(val[1:]) < val[0], f"{name}: the validation loss did not fall ({val})"


def _roundtrip(est, tmp_path: Path, draw) -> None:
    path = est.save(tmp_path / "est.safetensors")
    again = physgen.load(path)
    assert type(again) is type(est)
    for (k, a), (k2, b) in zip(est.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert torch.equal(draw(est), draw(again))


@pytest.mark.parametrize("name", sorted(VECTOR_FAMILIES))
def test_vector_posterior_contract(name, tmp_path):
    data = _vector_data()
    post = physgen.fit_posterior(data, model=name, model_options=VECTOR_FAMILIES[name], **FAST)
    _assert_loss_falls(post, name)
    x1, xb = data.x[0], data.x[:3]
    assert post.sample(5, x1, seed=0).shape == (5, 2)
    assert post.sample(5, xb, seed=0).shape == (5, 3, 2)
    if name in ("nsf", "maf"):
        lp = post.log_prob(data.theta[:4], data.x[:4])
        assert lp.shape == (4,) and torch.isfinite(lp).all()
    _roundtrip(post, tmp_path, lambda p: p.sample(4, x1, seed=1))
    assert type(post).__name__ in repr(post)


@pytest.mark.parametrize("name", sorted(VECTOR_FAMILIES))
def test_vector_emulator_contract(name, tmp_path):
    data = _vector_data()
    emu = physgen.fit_emulator(data, model=name, model_options=VECTOR_FAMILIES[name], **FAST)
    _assert_loss_falls(emu, name)
    assert emu.sample(5, data.theta[0], seed=0).shape == (5, 3)
    assert emu.sample(5, data.theta[:4], seed=0).shape == (5, 4, 3)
    if name in ("nsf", "maf"):
        lp = emu.log_prob(data.x[:4], data.theta[:4])
        assert lp.shape == (4,) and torch.isfinite(lp).all()
    _roundtrip(emu, tmp_path, lambda e: e.sample(4, data.theta[:2], seed=1))


@pytest.mark.parametrize("name", sorted(FIELD_FAMILIES))
def test_field_emulator_contract(name, tmp_path):
    data = _field_data()
    emu = physgen.fit_emulator(data, model=name, model_options=FIELD_FAMILIES[name], seed=0,
                               **{**FAST, "max_epochs": 6, "batch_size": 32, "lr": 2e-3})
    assert emu.model.net.name == "unet"
    assert emu.target_scale.shape == (1, 1, 1)  # per-channel standardisation of the field
    _assert_loss_falls(emu, name)
    assert emu.sample(2, data.theta[0], seed=0, steps=2).shape == (2, 1, 16, 16)
    assert emu.sample(2, data.theta[:3], seed=0, steps=2).shape == (2, 3, 1, 16, 16)
    lp = emu.log_prob(data.x[:2], data.theta[:2], steps=2, solver="rk4")
    assert lp.shape == (2,) and torch.isfinite(lp).all()
    _roundtrip(emu, tmp_path, lambda e: e.sample(2, data.theta[:2], seed=1, steps=2))


def test_flow_on_a_field_names_the_family_and_its_shapes():
    with pytest.raises(ValueError, match=r"'nsf' family .*vector targets \(D,\) only.*\(1, 16, 16\)"):
        physgen.fit_emulator(_field_data(8), model="nsf", **FAST)


def test_field_family_without_a_network_for_the_shape():
    from physgen.models import build_model

    with pytest.raises(ValueError, match=r"vectors \(D,\).*fields \(C, H, W\).*\(2, 4, 4, 4\)"):
        build_model("flow_matching", (2, 4, 4, 4), 2)


def test_model_options_are_checked():
    from physgen.models import build_model

    with pytest.raises(ValueError, match="unknown options"):
        build_model("nsf", 2, 1, hidden_feature=[8])


# ---------------------------------------------------------------------------------------------- format 1
def test_format1_posteriors_load_and_match():
    """Files written before the refactor (format 1) load and give the numbers they gave then."""
    x = torch.tensor([0.1, -0.2])
    nsf = physgen.load(DATA / "posterior_format1_nsf.safetensors")
    lp = nsf.log_prob(torch.tensor([[0.1, 0.2], [0.0, -0.1]]), x)
    torch.testing.assert_close(lp, torch.tensor([-5.623808860778809, -0.06651761382818222]), rtol=0, atol=1e-6)
    fm = physgen.load(DATA / "posterior_format1_flow_matching.safetensors")
    expected = torch.tensor([[0.780744194984436, 0.1397026777267456], [-0.6956259608268738, -0.4584754705429077],
                             [-0.6772598624229431, -0.8711735010147095]])
    torch.testing.assert_close(fm.sample(3, x, seed=0), expected, rtol=0, atol=1e-6)


def test_unknown_format_is_named(tmp_path):
    tensors, meta = load_file(DATA / "posterior_format1_nsf.safetensors")
    config = {**meta["config"], "format": 7}
    save_file(tmp_path / "future.safetensors", tensors, kind="posterior", config=config)
    with pytest.raises(CheckpointError, match="format 7"):
        physgen.load(tmp_path / "future.safetensors")


def test_weights_that_do_not_fit_are_refused(tmp_path):
    tensors, meta = load_file(DATA / "posterior_format1_nsf.safetensors")
    tensors = {k: v for k, v in tensors.items() if not k.startswith("model.")}
    save_file(tmp_path / "cut.safetensors", tensors, kind="posterior", config=json.loads(json.dumps(meta["config"])))
    with pytest.raises(CheckpointError, match="does not match"):
        physgen.load(tmp_path / "cut.safetensors")


# ---------------------------------------------------------------------------------------------- lazy data
def test_estimators_train_on_a_lazy_store(tmp_path):
    """A SimulationSet whose x stays in its zarr store trains a posterior and an emulator (read chunk by chunk)."""
    from simulators.sbibm import TwoMoons

    from physgen.data import LazyArray

    physgen.simulate(TwoMoons(), 600, seed=0, batch_size=200, path=tmp_path / "sims")
    lazy = physgen.load_simulations(tmp_path / "sims", lazy=True)
    assert isinstance(lazy.x, LazyArray)
    post = physgen.fit_posterior(lazy, model="nsf", model_options=VECTOR_FAMILIES["nsf"], **FAST)
    _assert_loss_falls(post, "nsf (lazy)")
    assert post.sample(3, torch.tensor([0.1, -0.2]), seed=0).shape == (3, 2)
    emu = physgen.fit_emulator(lazy, model="flow_matching", model_options=VECTOR_FAMILIES["flow_matching"], **FAST)
    assert emu.sample(3, torch.tensor([0.1, -0.2]), seed=0).shape == (3, 2)
