"""UNet (physgen.nn.unet): shapes and batching, zero init, conditioning, periodic equivariance,
gradients, rebuild from config, a small regression, errors."""

from __future__ import annotations

import json

import pytest
import torch

from physgen.nn import UNet


def _perturb_output(net: UNet, seed: int = 0) -> UNet:
    """Give the zero-initialised last conv random weights so the output depends on everything."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.output.weight.copy_(0.1 * torch.randn(net.output.weight.shape, generator=g))
        net.output.bias.copy_(0.1 * torch.randn(net.output.bias.shape, generator=g))
    return net


def _net(shape=(1, 16, 16), context_features=3, seed=0, **kw) -> UNet:
    torch.manual_seed(seed)
    kw.setdefault("channels", (8, 16))
    kw.setdefault("embedding_features", 32)
    return _perturb_output(UNet(shape, context_features, **kw))


@pytest.mark.parametrize("shape", [(1, 32, 32), (2, 30, 30), (1, 64, 48)])
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_shapes_and_batching(shape, batch):
    torch.manual_seed(0)
    net = _perturb_output(UNet(shape, context_features=3))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*batch, *shape, generator=g)
    t = torch.rand(batch, generator=g)
    emb = net.embed_context(torch.randn(*batch, 3, generator=g))
    assert emb.shape == (*batch, net.config["embedding_features"])
    with torch.no_grad():
        out = net(x, t, emb)
        assert out.shape == (*batch, *shape)
        assert torch.isfinite(out).all()
        # one element at a time gives the same numbers (leading dims are only flattened)
        flat_x, flat_t, flat_e = x.reshape(-1, *shape), t.reshape(-1), emb.reshape(-1, emb.shape[-1])
        single = torch.stack([net(flat_x[i], flat_t[i], flat_e[i]) for i in range(flat_x.shape[0])])
        torch.testing.assert_close(single.reshape(out.shape), out, atol=1e-5, rtol=1e-5)
        # a scalar t and a (1, E) context embedding broadcast against the batch
        if batch:
            t0, e0 = torch.tensor(0.3), emb.reshape(-1, emb.shape[-1])[:1]
            b = net(x, t0, e0)
            ref = net(x, torch.full(batch, 0.3), e0.expand(*batch, -1))
            torch.testing.assert_close(b, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("periodic", [False, True])
def test_padding_to_the_level_multiple(periodic):
    """Sizes that are not multiples of 2**(levels-1), down to a field smaller than the pad."""
    net = _net((2, 6, 1), channels=(4, 8, 8), periodic=periodic)
    x = torch.randn(3, 2, 6, 1)
    out = net(x, torch.rand(3), net.embed_context(torch.randn(3, 3)))
    assert out.shape == x.shape and torch.isfinite(out).all()
    if periodic:  # the wrap-around padding: every column is the one column, rows wrap
        torch.testing.assert_close(net._pad(x), x[..., [5, 0, 1, 2, 3, 4, 5, 0], :].expand(3, 2, 8, 4), atol=0, rtol=0)
        y = torch.randn(2, 6, 10)
        torch.testing.assert_close(net._pad(y), torch.nn.functional.pad(y[None], (1, 1, 1, 1), mode="circular")[0], atol=0, rtol=0)


def test_zero_output_at_init():
    torch.manual_seed(0)
    net = UNet((2, 30, 30), context_features=4)
    x = torch.randn(5, 2, 30, 30)
    out = net(x, torch.rand(5), net.embed_context(torch.randn(5, 4)))
    assert torch.equal(out, torch.zeros_like(out))


def test_output_depends_on_time_and_context():
    net = _net()
    x = torch.randn(4, 1, 16, 16)
    c = torch.randn(4, 3)
    with torch.no_grad():
        e = net.embed_context(c)
        base = net(x, torch.full((4,), 0.2), e)
        other_t = net(x, torch.full((4,), 0.8), e)
        other_c = net(x, torch.full((4,), 0.2), net.embed_context(c + 1.0))
    assert (other_t - base).abs().amax(dim=(-3, -2, -1)).min() > 1e-3
    assert (other_c - base).abs().amax(dim=(-3, -2, -1)).min() > 1e-3


@pytest.mark.parametrize("channels,shifts", [((8, 16, 16), [(4, 0), (0, -8), (12, 20)]), ((32, 64), [(2, 6), (-10, 0)])])
def test_periodic_equivariance(channels, shifts):
    net = _net((2, 32, 32), periodic=True, channels=channels)
    x = torch.randn(3, 2, 32, 32)
    t, e = torch.rand(3), net.embed_context(torch.randn(3, 3))
    with torch.no_grad():
        out = net(x, t, e)
        scale = out.abs().max()
        for s in shifts:
            err = (net(x.roll(s, dims=(-2, -1)), t, e) - out.roll(s, dims=(-2, -1))).abs().max()
            assert err <= 1e-5 * scale, (s, err.item(), scale.item())
        # not a trivial pass: a one-pixel shift is not a symmetry of the coarse levels
        err = (net(x.roll(1, dims=-1), t, e) - out.roll(1, dims=-1)).abs().max()
        assert err > 1e-2 * scale


def test_zero_padding_breaks_equivariance():
    net = _net((1, 32, 32), periodic=False)
    x, t = torch.randn(2, 1, 32, 32), torch.rand(2)
    e = net.embed_context(torch.randn(2, 3))
    with torch.no_grad():
        out = net(x, t, e)
        err = (net(x.roll(4, dims=-1), t, e) - out.roll(4, dims=-1)).abs().max()
    assert err > 1e-2 * out.abs().max()


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = UNet((1, 30, 30), context_features=3, channels=(8, 16, 16), num_res_blocks=2, embedding_features=32)
    x, t, c = torch.randn(4, 1, 30, 30), torch.rand(4), torch.randn(4, 3)
    # at init only the zero output layer can get a gradient, and it does: training starts
    (net(x, t, net.embed_context(c)) - x).square().mean().backward()
    assert net.output.weight.grad.abs().sum() > 0
    net.zero_grad()
    _perturb_output(net)
    (net(x, t, net.embed_context(c)) - x).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_rebuild_from_config_bit_for_bit():
    net = _net((2, 30, 30), periodic=True, channels=(8, 16, 16), num_res_blocks=2)
    config = json.loads(json.dumps(net.config))
    again = UNet(**config)
    again.load_state_dict(net.state_dict())
    x, t, c = torch.randn(3, 2, 30, 30), torch.rand(3), torch.randn(3, 3)
    with torch.no_grad():
        a = net(x, t, net.embed_context(c))
        b = again(x, t, again.embed_context(c))
        assert torch.equal(a, b)
        assert torch.equal(a, net(x, t, net.embed_context(c)))  # deterministic


def test_float64():
    net = _net().double()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    out = net(x, torch.rand(2, dtype=torch.float64), net.embed_context(torch.randn(2, 3, dtype=torch.float64)))
    assert out.dtype == torch.float64 and out.shape == x.shape


def test_tiny_regression_loss_falls():
    torch.manual_seed(0)
    net = UNet((1, 16, 16), context_features=2, channels=(8, 16), embedding_features=32)
    g = torch.Generator().manual_seed(0)
    u = torch.linspace(0, 2 * torch.pi, 16)
    pattern = torch.sin(u)[:, None] * torch.cos(u)[None, :]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        x = torch.randn(16, 1, 16, 16, generator=g)
        t = torch.rand(16, generator=g)
        c = torch.randn(16, 2, generator=g)
        # target: a fixed field scaled by 1 + t, shifted by the context, plus half of x
        target = ((1 + t[:, None, None]) * pattern + 0.5 * c[:, :1, None] + 0.5 * x[:, 0]).unsqueeze(1)
        loss = (net(x, t, net.embed_context(c)) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


@pytest.mark.parametrize("shape", [(32,), (1, 0, 32), (1, 32, 32, 1), (1.5, 8, 8), "abc", 32, None])
def test_invalid_event_shape(shape):
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        UNet(shape)


def test_one_channel_field_without_a_channel_axis():
    """(H, W) is a one-channel field: the same network as (1, H, W) on x.unsqueeze(-3)."""
    torch.manual_seed(0)
    a = UNet((12, 16), 2, channels=(8, 16), embedding_features=16, groups=4)
    b = UNet((1, 12, 16), 2, channels=(8, 16), embedding_features=16, groups=4)
    b.load_state_dict(a.state_dict())
    torch.nn.init.normal_(a.output.weight, std=0.1)
    b.output.weight.data.copy_(a.output.weight.data)
    x, c, t = torch.randn(3, 12, 16), torch.randn(3, 2), torch.rand(3)
    out = a(x, t, a.embed_context(c))
    assert out.shape == (3, 12, 16)
    torch.testing.assert_close(out, b(x.unsqueeze(-3), t, b.embed_context(c)).squeeze(-3))


def test_call_errors():
    net = _net()
    x, t = torch.randn(2, 1, 16, 16), torch.rand(2)
    with pytest.raises(ValueError, match=r"\(\*B, 1, 16, 16\)"):
        net(torch.randn(2, 1, 16, 15), t, net.embed_context(torch.randn(2, 3)))
    with pytest.raises(ValueError, match="embed_context"):
        net(x, t)
    with pytest.raises(ValueError, match=r"\(\*B, 3\)"):
        net.embed_context(torch.randn(2, 4))
    with pytest.raises(ValueError, match="broadcast"):
        net(x, torch.rand(3), net.embed_context(torch.randn(2, 3)))
    plain = UNet((1, 16, 16), channels=(8, 16))
    assert plain.embed_context(None) is None
    with pytest.raises(ValueError, match="no context"):
        plain(x, t, torch.zeros(2, 128))
