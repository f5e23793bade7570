"""Contract tests for every ConditionalModel family (nsf, maf, flow_matching, flow_matching_fast, diffusion).

Each family is trained briefly on a 2-D conditional banana so that its density is not trivial, then:
shapes and batching over observations, normalisation (quadrature of exp(log_prob) on a grid ≈ 1),
agreement between samples and log_prob (moments from samples vs. from the density), gradients
reaching every parameter, and save/load round trips (physgen.io and Posterior.save/physgen.load).
Bad-input errors are tested for the ODE-based families.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from physgen.io import load_file, save_file
from physgen.models import build_model

SMALL = {
    "nsf": {"transforms": 2, "hidden_features": [32, 32]},
    "maf": {"transforms": 3, "hidden_features": [32, 32]},
    "flow_matching": {"hidden_features": 32, "num_blocks": 2},
    "flow_matching_fast": {"hidden_features": 32, "num_blocks": 2},
    "diffusion": {"hidden_features": 32, "num_blocks": 2},
}
FAMILIES = sorted(SMALL)
ODE_FAMILIES = ["flow_matching", "flow_matching_fast", "diffusion"]
CTX = torch.tensor([[0.5]])


def banana(c: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """target | c: z1 = 0.8 e1, z2 = 0.4 (e1² - 1) + 0.5 e2 + 0.5 c."""
    e = torch.randn(c.shape[0], 2, generator=g)
    return torch.stack([0.8 * e[:, 0], 0.4 * (e[:, 0] ** 2 - 1) + 0.5 * e[:, 1] + 0.5 * c[:, 0]], -1)


def _train(name: str, steps: int = 250) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(name, 2, 1, **SMALL[name])
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        c = torch.randn(256, 1, generator=g)
        loss = model.loss(banana(c, g), c)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    cache: dict[str, torch.nn.Module] = {}

    def get(name: str) -> torch.nn.Module:
        if name not in cache:
            cache[name] = _train(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def grid_density(trained):
    """(grid points, cell area, log q on the grid at CTX) per family, computed once."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            z, da = _grid()
            with torch.no_grad():
                cache[name] = (z, da, trained(name).log_prob(z, CTX))
        return cache[name]

    return get


def _grid(n: int = 70):
    a = torch.linspace(-4.5, 4.5, n)
    b = torch.linspace(-3.5, 6.0, n)
    za, zb = torch.meshgrid(a, b, indexing="ij")
    return torch.stack([za, zb], -1).reshape(-1, 2), (a[1] - a[0]) * (b[1] - b[0])


@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_and_batching(trained, name):
    m = trained(name)
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(4, 1, generator=g)
    # ODE families on a fixed-step solver here (dopri5 shares one step size across a batch; the
    # default solver is exercised by the normalisation tests)
    kw = {"solver": "rk4", "steps": 8} if name in ODE_FAMILIES else {}
    with torch.no_grad():
        assert m.sample((3,), ctx, generator=g).shape == (3, 4, 2)
        assert m.sample((2, 3), ctx[0], generator=g).shape == (2, 3, 2)
        assert m.sample((5,), ctx.reshape(2, 2, 1), generator=g).shape == (5, 2, 2, 2)
        z = torch.randn(5, 4, 2, generator=g)
        lp = m.log_prob(z, ctx, **kw)
        assert lp.shape == (5, 4)
        assert m.log_prob(z[0], ctx[0], **kw).shape == (4,)  # context broadcast over targets
        # batching over observations: one at a time gives the same numbers
        one = torch.stack([m.log_prob(z[:, i], ctx[i], **kw) for i in range(4)], 1)
        torch.testing.assert_close(one, lp, atol=1e-5, rtol=1e-5)
        assert torch.isfinite(lp).all()
        # samples for different observations follow their own context: z2 shifts by 0.5 c
        s = m.sample((4000,), torch.tensor([[-1.5], [1.5]]), generator=g)
        shift = (s[:, 1, 1] - s[:, 0, 1]).mean().item()
        assert 1.0 < shift < 2.0, shift
    loss = m.loss(torch.randn(7, 2), torch.randn(7, 1))
    assert loss.dim() == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("name", FAMILIES)
def test_log_prob_broadcasts_target_over_contexts(trained, name):
    m = trained(name)
    z, ctx = torch.randn(5, 1, 2), torch.randn(4, 1)
    kw = {"solver": "rk4", "steps": 8} if name in ODE_FAMILIES else {}
    with torch.no_grad():
        lp = m.log_prob(z, ctx, **kw)
        full = m.log_prob(z.expand(5, 4, 2), ctx, **kw)
    assert lp.shape == (5, 4)
    torch.testing.assert_close(lp, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_log_prob_normalised(grid_density, name):
    z, da, lp = grid_density(name)
    mass = (lp.exp().sum() * da).item()
    assert abs(mass - 1.0) < 0.02, mass


@pytest.mark.parametrize("name", FAMILIES)
def test_sample_log_prob_consistency(trained, grid_density, name):
    """Moments of samples agree with the moments of exp(log_prob) (quadrature), and the model learned the banana."""
    m = trained(name)
    z, da, lp = grid_density(name)
    w = lp.exp() * da
    with torch.no_grad():
        s = m.sample((20000,), CTX[0], generator=torch.Generator().manual_seed(1))

    def feats(v):
        return torch.stack([v[:, 0], v[:, 1], v[:, 0] ** 2, v[:, 1] ** 2, v[:, 0] ** 2 * v[:, 1]], -1)

    from_density = (feats(z) * w[:, None]).sum(0) / w.sum()
    from_samples = feats(s).mean(0)
    se = feats(s).std(0) / math.sqrt(s.shape[0])
    assert ((from_samples - from_density).abs() < 4 * se + 0.02).all(), (from_samples, from_density)
    # the banana: E z2 = 0.25, E z1² = 0.64, E z1² z2 ≈ 0.4·(3·0.64² - ...) > 0 (curvature was learned)
    assert abs(from_samples[1].item() - 0.25) < 0.15 and abs(from_samples[2].item() - 0.64) < 0.15
    assert from_samples[4].item() > 0.2


@pytest.mark.parametrize("name", FAMILIES)
def test_gradients_reach_every_parameter(trained, name):
    m = copy.deepcopy(trained(name)).train()
    g = torch.Generator().manual_seed(2)
    c = torch.randn(64, 1, generator=g)
    m.loss(banana(c, g), c).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"
    if name in ODE_FAMILIES:  # log_prob through the ODE is differentiable too
        m.zero_grad()
        m.log_prob(banana(c[:8], g), c[:8], solver="rk4", steps=4).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


@pytest.mark.parametrize("name", FAMILIES)
def test_save_load_round_trip(trained, name, tmp_path):
    m = trained(name)
    save_file(tmp_path / "m.safetensors", m.state_dict(), kind="model", config={"name": m.name, **m.config})
    tensors, meta = load_file(tmp_path / "m.safetensors", kind="model")
    cfg = dict(meta["config"])
    m2 = build_model(cfg.pop("name"), **cfg)
    m2.load_state_dict(tensors)
    m2.eval()
    z = torch.randn(6, 2)
    with torch.no_grad():
        assert torch.equal(m.log_prob(z, CTX), m2.log_prob(z, CTX))
        a = m.sample((5,), CTX, generator=torch.Generator().manual_seed(3))
        b = m2.sample((5,), CTX, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", FAMILIES)
def test_posterior_save_load_round_trip(name, tmp_path):
    import physgen.inference as inference
    from physgen.data import SimulationSet
    from physgen.priors import BoxUniform

    g = torch.Generator().manual_seed(0)
    theta = torch.rand(300, 2, generator=g) * 2 - 1
    x = theta + 0.1 * torch.randn(300, 2, generator=g)
    post = inference.fit_posterior(
        SimulationSet(theta, x, {}), model=name, prior=BoxUniform([-1.0, -1.0], [1.0, 1.0]),
        model_options=SMALL[name], max_epochs=2, device="cpu",
    )
    post.save(tmp_path / "post.safetensors")
    import physgen

    post2 = physgen.load(tmp_path / "post.safetensors")
    xo = torch.tensor([0.2, -0.3])
    a = post.sample(7, xo, seed=4)
    b = post2.sample(7, xo, seed=4)
    assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(post.log_prob(a, xo), post2.log_prob(a, xo))


# --- bad input (ODE-based families) ----------------------------------------------------------------


@pytest.mark.parametrize("name", ODE_FAMILIES)
def test_wrong_context_shape_is_a_clear_error(name):
    m = build_model(name, 2, 3, **SMALL[name])
    with pytest.raises(ValueError, match="context_dim=3"):
        m.sample((2,), torch.randn(4, 2))
    with pytest.raises(ValueError, match="context_dim=3"):
        m.log_prob(torch.randn(4, 2), torch.randn(4, 5))
    with pytest.raises(ValueError, match="context_dim=3"):
        m.loss(torch.randn(4, 2), torch.randn(4, 1))
    with pytest.raises(ValueError, match=r"event shape \(2,\)"):
        m.log_prob(torch.randn(4, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="do not broadcast"):
        m.log_prob(torch.randn(4, 2), torch.randn(5, 3))
    with pytest.raises(ValueError, match="needs a context"):
        m.sample((2,), None)


@pytest.mark.parametrize("name", ODE_FAMILIES)
def test_nonpositive_steps_is_an_error(name):
    m = build_model(name, 2, 1, **SMALL[name])
    for steps in (0, -3):
        with pytest.raises(ValueError, match="steps must be a positive integer"):
            m.sample((2,), CTX, steps=steps)
        with pytest.raises(ValueError, match="steps must be a positive integer"):
            m.log_prob(torch.zeros(1, 2), CTX, steps=steps, solver="rk4")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        build_model(name, 2, 1, steps=0)


@pytest.mark.parametrize("name", ODE_FAMILIES)
def test_nan_during_sampling_names_the_cause(name, trained):
    m = copy.deepcopy(trained(name))
    with torch.no_grad():
        m.net.blocks[0].lin1.bias[0] = float("nan")
    kw = [{}] if name.startswith("flow_matching") else [{}, {"sampler": "sde", "steps": 5}]
    for k in kw:
        with pytest.raises(FloatingPointError, match="NaN"):
            m.sample((3,), CTX, **k)
    with pytest.raises(FloatingPointError, match="NaN"):
        m.log_prob(torch.zeros(2, 2), CTX)


@pytest.mark.parametrize("name", ODE_FAMILIES)
def test_nan_appearing_mid_trajectory(name, trained):
    """A field that is finite at the start but diverges later is caught at the step it appears."""
    m = copy.deepcopy(trained(name))
    real = m.net.forward
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out if calls["n"] < 3 else out * float("nan")

    m.net.forward = flaky
    with pytest.raises(FloatingPointError, match="NaN"):
        m.sample((3,), CTX.expand(2, 1))  # two observations: the plain forward at every step
    assert calls["n"] == 3
    if name.startswith("flow_matching"):  # one observation: the frozen network (ResidualMLP.frozen) per step
        real_frozen, calls["n"] = m.net.frozen, 0

        def flaky_frozen(*a, **k):
            return [lambda x, f=f: flaky(x) for f in real_frozen(*a, **k)]

        def flaky(x, f=None):
            calls["n"] += 1
            return x * float("nan") if calls["n"] >= 3 else x

        m.net.frozen = flaky_frozen
        with pytest.raises(FloatingPointError, match="NaN"):
            m.sample((3,), CTX)
        assert calls["n"] == 3


@pytest.mark.parametrize("name", ["flow_matching", "flow_matching_fast"])
@pytest.mark.parametrize("solver", ["euler", "midpoint", "heun", "rk4"])
def test_frozen_sampling_path_equals_the_plain_one(trained, name, solver):
    """One observation on a fixed grid uses the network with its conditioning folded in; it must give the
    samples of the plain forward pass (here: with the baseline fitted so that its affine field is used too)."""
    import physgen.models.flow_matching as fm

    m = copy.deepcopy(trained(name))
    g = torch.Generator().manual_seed(1)
    c = torch.randn(300, 1, generator=g)
    m.gaussian.fit(banana(c, g), c)
    kw = {"solver": solver, "steps": 3}
    a = m.sample((500,), CTX, generator=torch.Generator().manual_seed(0), **kw)
    plain = fm.FIXED_METHODS
    try:
        fm.FIXED_METHODS = ()
        b = m.sample((500,), CTX, generator=torch.Generator().manual_seed(0), **kw)
    finally:
        fm.FIXED_METHODS = plain
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ODE_FAMILIES)
def test_hutchinson_trace_is_unbiased(trained, name):
    m = trained(name)
    z = torch.tensor([[0.3, 0.1]])
    with torch.no_grad():
        exact = m.log_prob(z, CTX, trace="exact", solver="rk4", steps=16)
        many = m.log_prob(z.expand(2000, 2), CTX, trace="hutchinson", solver="rk4", steps=16,
                          generator=torch.Generator().manual_seed(0))
    assert many.std() > 1e-4  # the estimator is random per probe...
    assert abs(many.mean().item() - exact.item()) < 4 * many.std().item() / math.sqrt(2000) + 1e-3  # ...and unbiased
