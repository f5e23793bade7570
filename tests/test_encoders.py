"""Encoders of physgen.nn: shapes, exact permutation invariance, padding invariance, masks, errors, rebuild."""

from __future__ import annotations

import pytest
import torch

from physgen.shapes import join_points
from physgen.nn import (
    ENCODERS,
    CNNEncoder,
    DeepSetsEncoder,
    MLPEncoder,
    SetTransformerEncoder,
    build_encoder,
)

SET_ENCODERS = {
    "deepsets_mean": lambda: DeepSetsEncoder(3, 8, pool="mean"),
    "deepsets_sum": lambda: DeepSetsEncoder(3, 8, pool="sum"),
    "deepsets_max": lambda: DeepSetsEncoder(3, 8, pool="max"),
    "set_transformer": lambda: SetTransformerEncoder(3, 8, hidden_features=32, heads=4, num_layers=2, num_seeds=2),
}


def _sets(b=4, n=12, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(b, n, d, generator=g)
    counts = torch.tensor([n, 7, 1, 5])[:b]
    mask = torch.arange(n) < counts[:, None]
    return pts, mask


@pytest.fixture(params=sorted(SET_ENCODERS))
def set_encoder(request):
    torch.manual_seed(0)
    return SET_ENCODERS[request.param]().eval()


def test_set_shapes_and_batching(set_encoder):
    pts, mask = _sets()
    out = set_encoder(join_points(pts, mask))
    assert out.shape == (4, 8)
    # extra batch dims and one-at-a-time evaluation agree
    out2 = set_encoder(join_points(pts, mask).reshape(2, 2, 12, 4))
    assert out2.shape == (2, 2, 8)
    torch.testing.assert_close(out2.reshape(4, 8), out, atol=1e-6, rtol=1e-6)
    single = torch.stack([set_encoder(join_points(pts[i : i + 1], mask[i : i + 1]))[0] for i in range(4)])
    torch.testing.assert_close(single, out, atol=1e-6, rtol=1e-6)


def test_set_permutation_invariance(set_encoder):
    pts, mask = _sets()
    x = join_points(pts, mask)
    out = set_encoder(x)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        perm = torch.randperm(12, generator=g)
        out_p = set_encoder(x[:, perm])
        assert (out_p - out).abs().max().item() < 1e-5
    if isinstance(set_encoder, DeepSetsEncoder):
        # sorted pooling: bit-identical under permutation
        assert torch.equal(set_encoder(x[:, torch.randperm(12, generator=g)]), out)


def test_set_padding_changes_nothing(set_encoder):
    pts, mask = _sets()
    x = join_points(pts, mask)
    out = set_encoder(x)
    pad = torch.zeros(4, 9, 4)
    out_pad = set_encoder(torch.cat([x, pad], dim=1))
    assert (out_pad - out).abs().max().item() < 1e-6
    # garbage coordinates under the mask do not matter either
    junk = torch.cat([torch.randn(4, 9, 3) * 100, torch.zeros(4, 9, 1)], -1)
    out_junk = set_encoder(torch.cat([x, junk], dim=1))
    assert (out_junk - out).abs().max().item() < 1e-6
    # the variable-size set equals the unpadded set of its real points
    for i, n in enumerate([12, 7, 1, 5]):
        alone = set_encoder(join_points(pts[i : i + 1, :n], torch.ones(1, n, dtype=torch.bool)))
        assert (alone[0] - out[i]).abs().max().item() < 1e-5


def test_set_explicit_mask_equals_mask_column(set_encoder):
    pts, mask = _sets()
    a = set_encoder(join_points(pts, mask))
    b = set_encoder(pts, mask=mask)
    torch.testing.assert_close(a, b)


def test_set_points_matter(set_encoder):
    pts, mask = _sets()
    a = set_encoder(join_points(pts, mask))
    b = set_encoder(join_points(pts + 0.5, mask))
    assert (a - b).abs().max().item() > 1e-3


def test_all_masked_set_is_an_error(set_encoder):
    pts, mask = _sets()
    mask[1] = False
    with pytest.raises(ValueError, match="no real points"):
        set_encoder(join_points(pts, mask))
    with pytest.raises(ValueError, match="no real points"):
        set_encoder(pts[:, :0], mask=mask[:, :0])


def test_set_wrong_shape_is_an_error(set_encoder):
    with pytest.raises(ValueError, match="point set"):
        set_encoder(torch.randn(4, 12, 7))
    with pytest.raises(ValueError, match="mask"):
        set_encoder(torch.randn(4, 12, 3), mask=torch.ones(4, 11, dtype=torch.bool))


def test_set_gradients_reach_every_parameter(set_encoder):
    pts, mask = _sets()
    set_encoder(join_points(pts, mask)).pow(2).sum().backward()
    for name, p in set_encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize(
    "shape,kw",
    [((16, 16), {}), ((2, 16, 12), {"spatial_dims": 2}), ((8, 8, 8), {"spatial_dims": 3}), ((2, 8, 8, 8), {})],
)
def test_cnn_shapes(shape, kw, periodic):
    torch.manual_seed(0)
    enc = CNNEncoder(shape, 6, channels=(4, 8), periodic=periodic, **kw)
    x = torch.randn(3, 2, *shape)
    out = enc(x)
    assert out.shape == (3, 2, 6)
    torch.testing.assert_close(enc(x[1, 0]), out[1, 0], atol=1e-5, rtol=1e-5)


def test_cnn_periodic_translation_invariance():
    """Circular padding + global pooling: shifting a periodic field by the total stride changes nothing."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 16)
    per = CNNEncoder((16, 16), 5, channels=(4, 8), periodic=True)
    shifted = torch.roll(x, shifts=(4, -8), dims=(-2, -1))  # multiples of the total stride 4
    assert (per(shifted) - per(x)).abs().max().item() < 1e-5
    zero = CNNEncoder((16, 16), 5, channels=(4, 8), periodic=False)
    zero.load_state_dict(per.state_dict())
    assert (zero(shifted) - zero(x)).abs().max().item() > 1e-4  # zero padding sees the edges


def test_cnn_errors():
    with pytest.raises(ValueError, match="ambiguous"):
        CNNEncoder((3, 8, 8))
    enc = CNNEncoder((8, 8), 4, channels=(4,))
    with pytest.raises(ValueError, match="event shape"):
        enc(torch.randn(2, 8, 9))


def test_mlp_encoder():
    torch.manual_seed(0)
    enc = MLPEncoder(5, 3)
    assert enc(torch.randn(2, 4, 5)).shape == (2, 4, 3)
    with pytest.raises(ValueError, match=r"\(\*B, 5\)"):
        enc(torch.randn(2, 4))


@pytest.mark.parametrize(
    "enc",
    [
        MLPEncoder(4, 3),
        CNNEncoder((8, 8), 3, channels=(4,), periodic=True),
        DeepSetsEncoder(2, 3, pool="max"),
        SetTransformerEncoder(2, 3, hidden_features=16, heads=2),
    ],
    ids=lambda e: e.name,
)
def test_build_encoder_round_trip(enc):
    assert enc.name in ENCODERS
    assert enc.x_standardization in ("feature", "global", "none")
    rebuilt = build_encoder(enc.name, **enc.config)
    rebuilt.load_state_dict(enc.state_dict())
    x = {"mlp": torch.randn(3, 4), "cnn": torch.randn(3, 8, 8)}.get(enc.name, join_points(torch.randn(3, 5, 2), torch.ones(3, 5, dtype=torch.bool)))
    torch.testing.assert_close(rebuilt(x), enc(x))
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("nope")


@pytest.mark.parametrize("conditioning", ["add", "film"])
def test_residual_mlp_conditioning(conditioning):
    """Both conditionings: the output depends on time and context, gradients reach every parameter."""
    from physgen.nn import ResidualMLP

    torch.manual_seed(0)
    net = ResidualMLP(2, 2, 3, hidden_features=16, num_blocks=2, conditioning=conditioning)
    torch.nn.init.normal_(net.output.weight, std=0.1)  # the zero-initialised output would hide everything
    x, c = torch.randn(5, 2), torch.randn(5, 3)
    t = torch.full((5,), 0.3)
    out = net(x, t, net.embed_context(c))
    assert out.shape == (5, 2)
    assert not torch.allclose(out, net(x, t + 0.2, net.embed_context(c)))
    assert not torch.allclose(out, net(x, t, net.embed_context(c + 1.0)))
    with pytest.raises(ValueError, match="context_embedding"):
        net(x, t)
    rebuilt = ResidualMLP(**net.config)
    rebuilt.load_state_dict(net.state_dict())
    assert torch.equal(rebuilt(x, t, rebuilt.embed_context(c)), out)
    out.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    if conditioning == "film":
        assert net.blocks[0].cond.out_features == 32  # a scale and a shift per feature


def test_residual_mlp_unknown_conditioning_is_an_error():
    from physgen.nn import ResidualMLP

    with pytest.raises(ValueError, match="conditioning must be one of"):
        ResidualMLP(2, 2, 3, conditioning="concat")
