"""PairCorrelationEncoder (physgen.nn.point_summary) and the pair geometry of physgen.nn.point_pairs."""

from __future__ import annotations

import pytest
import torch

from physgen.nn import build_encoder, encoder_for
from physgen.nn.point_pairs import neighbour_counts, pair_counts, trim_padding
from physgen.nn.point_summary import PairCorrelationEncoder
from physgen.shapes import join_points
from simulators.galaxies import ThomasProcess, pair_correlation


def _poisson(b, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.full((b,), float(n)), generator=g).long()
    pts = torch.rand(b, int(counts.max()) + 5, d, generator=g)
    mask = torch.arange(pts.shape[1]) < counts[:, None]
    return join_points(pts, mask)


@pytest.mark.parametrize("dim", [2, 3])
def test_poisson_pair_correlation_is_one(dim):
    enc = PairCorrelationEncoder(dim, 4, bins=8, r_min=0.02, r_max=0.4)
    x = _poisson(64, 400, dim, seed=dim)
    g, count = enc.pair_correlation(x)
    assert g.shape == (64, 8) and count.shape == (64,)
    mean, sem = g.mean(0), g.std(0) / 64**0.5
    # every bin within 4 standard errors of 1 (and the pooled mean within 1%)
    assert bool(((mean - 1).abs() < 4 * sem + 1e-3).all()), (mean, sem)
    assert abs(float(g.mean()) - 1) < 0.01


def test_thomas_pair_correlation_matches_analytic():
    sim = ThomasProcess(1.0, 2)
    theta = torch.tensor([[40.0, 8.0, 0.02]]).expand(48, 3)
    x = sim.simulate(theta, generator=torch.Generator().manual_seed(0))
    enc = PairCorrelationEncoder(2, 4, bins=10, r_min=0.01, r_max=0.2)
    g, _ = enc.pair_correlation(x)
    mid = (enc.edges[1:] * enc.edges[:-1]).sqrt()
    mid[0] = enc.edges[1] / 2
    # compare bin averages of the analytic g (fine quadrature over each annulus) with the mean estimate
    r = torch.linspace(0, 0.2, 4001, dtype=torch.float64)[1:]
    ga = sim.pair_correlation(theta[:1].double(), r)[0]
    exact = torch.stack([(ga * r)[(r > lo) & (r <= hi)].sum() / r[(r > lo) & (r <= hi)].sum()
                         for lo, hi in zip(enc.edges[:-1].tolist(), enc.edges[1:].tolist())])
    # the natural estimator with N(N-1) randoms is biased by the integral constraint 1 / (1 + 1/(κV))
    exact = exact / (1 + 1 / 40.0)
    mean, sem = g.mean(0), g.std(0) / 48**0.5
    assert bool(((mean - exact).abs() < 4 * sem + 0.03 * exact).all()), (mean, exact, sem)


def test_pair_counts_agree_with_the_simulators_estimator():
    sim = ThomasProcess(1.0, 3, bounds={"kappa": (30, 30.1)})
    x = sim.simulate(sim.prior.sample((3,)), generator=torch.Generator().manual_seed(1))
    enc = PairCorrelationEncoder(3, 4, bins=6, spacing="linear", r_max=0.3)
    g, _ = enc.pair_correlation(x)
    ref = pair_correlation(x, 1.0, enc.edges)
    torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-10)


def test_neighbour_counts_brute_force_minimum_image():
    g = torch.Generator().manual_seed(2)
    pts = torch.rand(2, 30, 2, generator=g, dtype=torch.float64)
    mask = torch.arange(30) < torch.tensor([[30], [17]])
    radii = torch.tensor([0.05, 0.2, 0.5])
    counts = neighbour_counts(pts, mask, 1.0, radii)
    for b in range(2):
        for i in range(int(mask[b].sum())):
            diff = pts[b, i] - pts[b, mask[b]]
            diff = diff - torch.round(diff)
            r = diff.norm(dim=-1)
            expect = torch.tensor([float(((r <= rr) & (r > 0)).sum()) for rr in radii.tolist()], dtype=torch.float64)
            torch.testing.assert_close(counts[b, i], expect)
        assert bool((counts[b, int(mask[b].sum()):] == 0).all())
    edges = torch.tensor([0.0, 0.1, 0.3])
    dd = pair_counts(pts, mask, 1.0, edges)
    assert dd.shape == (2, 2) and float(dd[1].sum()) <= 17 * 16


def test_trim_padding_is_exact_and_handles_holes():
    pts = torch.arange(24.0).reshape(2, 4, 3)
    mask = torch.tensor([[True, False, True, False], [False, False, True, False]])
    p, m = trim_padding(pts, mask)
    assert p.shape == (2, 2, 3) and bool(m[0].all()) and m[1].tolist() == [True, False]
    torch.testing.assert_close(p[0], pts[0, [0, 2]])
    torch.testing.assert_close(p[1, 0], pts[1, 2])


def test_encoder_standardize_forward_and_rebuild():
    torch.manual_seed(0)
    x = _poisson(40, 100, 2, seed=3)
    enc = encoder_for("pair_correlation", tuple(x.shape[1:]), out_features=5, bins=6)
    assert isinstance(enc, PairCorrelationEncoder) and enc.out_features == 5 and enc.accepts == ("points",)
    enc.standardize_from(x)
    s = (enc.summary(x) - enc.shift.float()) / enc.scale.float()
    torch.testing.assert_close(s.mean(0), torch.zeros(7), atol=1e-5, rtol=0)
    out = enc(x)
    assert out.shape == (40, 5) and torch.isfinite(out).all()
    # padding and permutation change nothing
    padded = torch.cat([x, torch.zeros(40, 7, 3)], 1)
    perm = torch.randperm(x.shape[1])
    torch.testing.assert_close(enc(padded), out)
    torch.testing.assert_close(enc(x[:, perm]), out, atol=1e-5, rtol=1e-5)
    again = build_encoder(enc.name, **enc.config)
    again.load_state_dict(enc.state_dict())
    torch.testing.assert_close(again(x), out)


def test_encoder_errors_name_the_shape():
    with pytest.raises(ValueError, match=r"\(N_max, d \+ 1\)"):
        encoder_for("pair_correlation", (32, 32, 32))
    enc = PairCorrelationEncoder(2, 3)
    with pytest.raises(ValueError, match=r"\(\*B, N, 3\)"):
        enc(torch.zeros(4, 10, 4))
    with pytest.raises(ValueError, match="box_size/2"):
        PairCorrelationEncoder(2, 3, r_max=0.7)


def test_row_cache_is_exact_and_never_stale():
    from physgen.nn import DeepSetsEncoder

    torch.manual_seed(0)
    enc = DeepSetsEncoder(2, 4, neighbour_radii=[0.05, 0.1], use_coordinates=False, log_count=True).eval()
    x = _poisson(6, 40, 2, seed=5)
    first = enc(x)
    assert len(enc._counts.store) == 6
    torch.testing.assert_close(enc(x[[3, 1]]), first[[3, 1]])  # served from the cache, in another batch
    fresh = DeepSetsEncoder(2, 4, neighbour_radii=[0.05, 0.1], use_coordinates=False, log_count=True).eval()
    fresh.load_state_dict(enc.state_dict())
    torch.testing.assert_close(fresh(x[[3, 1]]), first[[3, 1]])  # equals the uncached computation
    moved = x.clone()
    moved[0, 0, 0] = (moved[0, 0, 0] + 0.5) % 1.0  # one point moved: a new key, new counts
    p, m = moved[..., :2], moved[..., 2] > 0.5
    expect = neighbour_counts(*trim_padding(p[:1], m[:1]), 1.0, torch.tensor([0.05, 0.1]))
    got = enc._counts(*trim_padding(p[:1], m[:1]), enc._neighbour_counts)
    torch.testing.assert_close(got, expect)


def test_large_batches_without_gradients_are_encoded_in_blocks_of_similar_size(monkeypatch):
    import physgen.nn.point_pairs as pp
    from physgen.nn import DeepSetsEncoder, SetTransformerEncoder

    monkeypatch.setattr(pp, "EVAL_BLOCK", 4)
    x = _poisson(11, 30, 2, seed=6)
    for enc in (DeepSetsEncoder(2, 3, neighbour_radii=[0.1], log_count=True),
                SetTransformerEncoder(2, 3, hidden_features=8, heads=2, num_inducing=4)):
        enc.eval()
        with torch.no_grad():
            blocks = enc(x)  # 11 > 4 sets: three blocks, in order of size
            single = torch.cat([enc(x[i:i + 1]) for i in range(11)])
        torch.testing.assert_close(blocks, single, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(enc(x).detach(), blocks, atol=1e-6, rtol=1e-6)  # with gradients: one call


def test_deepsets_pair_features_are_standardised_and_old_configs_keep_their_state():
    from physgen.nn import DeepSetsEncoder

    old = DeepSetsEncoder(2, 4)
    assert not any("shift" in k or "scale" in k for k in old.state_dict())  # saved posteriors load as before
    old.standardize_from(_poisson(5, 20, 2, seed=1))  # a no-op without pair features / log N
    enc = DeepSetsEncoder(2, 4, neighbour_radii=[0.05, 0.1], use_coordinates=False, log_count=True)
    x = _poisson(30, 60, 2, seed=7)
    enc.standardize_from(x)
    pts, m = x[..., :2], x[..., 2] > 0.5
    f = enc.point_features(*trim_padding(pts, m))[trim_padding(pts, m)[1]].double()
    torch.testing.assert_close(((f - enc.feature_shift) / enc.feature_scale).mean(0), torch.zeros(2, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    logn = torch.log(m.sum(-1).double())
    assert abs(float(enc.count_shift) - float(logn.mean())) < 1e-5
    again = DeepSetsEncoder(**enc.config)
    again.load_state_dict(enc.state_dict())
    torch.testing.assert_close(again(x), enc(x))
