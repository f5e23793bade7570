"""The point-cloud emulator family (physgen/emulators/point_cloud.py): exact count normalisation against
torch's negative binomial, symmetries of the velocity network, normalisation of the position density on the
torus, shapes, fit_emulator / save / load, and bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import physgen
from physgen.data import SimulationSet
from physgen.emulators.point_cloud import PointCloudFlow
from physgen.emulators.point_cloud_net import PeriodicSetField
from physgen.priors import sample_prior

torch.set_num_threads(1)


def _randomise(model: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> None:
    """Non-zero gates, so that an untrained network moves points (the gates start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gate" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def _sets(b: int, n_max: int, d: int, counts: list[int], box: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(b, n_max, d + 1)
    for i, n in enumerate(counts):
        x[i, :n, :d] = torch.rand(n, d, generator=g) * box
        x[i, :n, d] = 1.0
    return x


def test_count_table_is_the_normalised_negative_binomial_mixture():
    torch.manual_seed(0)
    m = PointCloudFlow((300, 3), 2, components=3)
    ctx = torch.randn(5, 2)
    table = m.count_table(ctx)
    assert table.shape == (5, 301)
    assert torch.allclose(table.exp().sum(-1), torch.ones(5, dtype=table.dtype), atol=1e-5)
    # an independent oracle: torch.distributions' NegativeBinomial (total_count r, probs m / (r + m))
    logit_w, log_m, log_r = m.count_net(ctx).chunk(3, -1)
    r, mean = log_r.clamp(-7, 12).exp(), log_m.exp()
    nb = torch.distributions.NegativeBinomial(total_count=r[..., None], probs=(mean / (r + mean))[..., None])
    lp = nb.log_prob(torch.arange(301.0)) + torch.log_softmax(logit_w, -1)[..., None]
    ref = torch.logsumexp(lp, 1)
    ref = ref - torch.logsumexp(ref, -1, keepdim=True)
    assert torch.allclose(table, ref, atol=1e-4)


def test_velocity_is_permutation_translation_and_padding_equivariant():
    torch.manual_seed(0)
    net = PeriodicSetField(2, 5, hidden_features=32, heads=4, num_layers=2, num_inducing=4)
    _randomise(net)
    x, cond = torch.rand(3, 20, 2), torch.randn(3, 5)
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[1, 12:] = False
    v = net(x, mask, cond)
    assert torch.all(v[1, 12:] == 0) and v[0].abs().max() > 1e-3
    perm = torch.randperm(12)
    xp = x.clone()
    xp[1, :12] = x[1, perm]
    assert torch.allclose(net(xp, mask, cond)[1, :12], v[1, perm], atol=1e-5)
    shifted = torch.remainder(x + torch.tensor([0.37, -0.81]), 1.0)  # a translation on the torus
    assert torch.allclose(net(shifted, mask, cond)[mask], v[mask], atol=1e-4)
    padded = torch.cat([x, torch.rand(3, 7, 2)], 1)  # more padding, random coordinates: nothing changes
    pmask = torch.cat([mask, torch.zeros(3, 7, dtype=torch.bool)], 1)
    assert torch.allclose(net(padded, pmask, cond)[:, :20], v, atol=1e-5)


def test_position_density_integrates_to_one_on_the_torus():
    """∫ q(x_1, x_2 | N = 2) dx = 1 on the torus [0, L)^4. q depends on x_2 - x_1 only (translation
    equivariance), so the integral is L^2 ∫ q(x_1, x_1 + y) dy: a 40 x 40 midpoint rule over y, exact
    divergence. A discontinuous field, a wrong sign of the divergence or a missing -N d log L fails it."""
    torch.manual_seed(1)
    box, k = 2.0, 40
    m = PointCloudFlow((3, 3), 1, box_size=box, hidden_features=16, num_layers=2, trace="exact", log_prob_steps=6,
                       log_prob_solver="rk4")
    _randomise(m, scale=0.3)
    grid = (torch.arange(k) + 0.5) / k * box
    y = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    x1 = torch.tensor([0.2, 0.4])
    x = torch.zeros(len(y), 3, 3)
    x[:, 0, :2], x[:, 1, :2], x[:, :2, 2] = x1, torch.remainder(x1 + y, box), 1.0
    c = torch.full((len(y), 1), 0.3)
    with torch.no_grad():
        log_pos = m.log_prob(x, c) - m.count_table(c)[:, 2]
    w = (log_pos + 4 * math.log(box)).exp()  # q L^4 at each grid point; its mean is the integral
    assert float(w.max()) > 2.0 and float(w.min()) < 0.7  # the flow is far from the identity: the test can fail
    assert abs(float(w.mean()) - 1.0) < 0.02
    x, c = x[::32], c[::32]
    # the Hutchinson estimate is unbiased for the same quantity
    m.config["trace"] = "hutchinson"
    with torch.no_grad():
        est = m.log_prob(x.repeat(40, 1, 1), c.repeat(40, 1), generator=torch.Generator().manual_seed(0)).reshape(40, -1)
        exact = m.log_prob(x, c, trace="exact")
    assert (est.mean(0) - exact).abs().max() < 6 * est.std(0).max() / math.sqrt(40) + 1e-4


def test_sample_shapes_box_and_mask():
    torch.manual_seed(0)
    m = PointCloudFlow((40, 3), 2, box_size=3.0, hidden_features=16, num_layers=1, steps=4)
    _randomise(m)
    s = m.sample((5,), torch.randn(2, 2), generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 2, 40, 3)
    pts, mask = s[..., :2], s[..., 2]
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    real = mask > 0
    assert bool(((pts >= 0) & (pts < 3.0))[real].all()) and bool((pts[~real] == 0).all())
    n = real.sum(-1)
    assert torch.equal(real, torch.arange(40) < n[..., None])  # real points first
    unconditional = PointCloudFlow((10, 2), 0, steps=2, hidden_features=8, num_layers=1)
    assert unconditional.sample((3,), None).shape == (3, 10, 2)


@pytest.fixture(scope="module")
def thomas_data():
    from simulators.galaxies import ThomasProcess

    sim = ThomasProcess(1.0, 2, bounds={"kappa": (5.0, 10.0), "mu": (2.0, 4.0), "sigma": (0.03, 0.05)})
    g = torch.Generator().manual_seed(0)
    theta = sample_prior(sim.prior, (96,), generator=g)
    return sim, SimulationSet(theta, sim.simulate(theta, generator=g), meta={})


def test_fit_emulator_save_load_and_bad_input(thomas_data, tmp_path):
    sim, data = thomas_data
    emu = physgen.fit_emulator(data, model="point_cloud", model_options={"hidden_features": 16, "num_layers": 1,
                               "steps": 4, "log_prob_steps": 4}, max_epochs=1, batch_size=32, progress=False,
                               num_threads=1, seed=0)
    assert emu.target_standardization == "none"  # the family's own default: coordinates in box units
    theta = data.theta[0]
    s = emu.sample(3, theta, seed=5)
    assert s.shape == (3, *sim.x_shape)
    assert emu.sample(2, data.theta[:4], seed=5).shape == (2, 4, *sim.x_shape)
    lp = emu.log_prob(data.x[:3], data.theta[:3], trace="exact")
    assert lp.shape == (3,) and bool(torch.isfinite(lp).all())
    path = emu.save(tmp_path / "emu.safetensors")
    back = physgen.load(path)
    assert torch.equal(back.sample(3, theta, seed=5), s)
    assert torch.allclose(back.log_prob(data.x[:3], data.theta[:3], trace="exact"), lp, atol=1e-5)
    # θ outside the training prior: a warning, never silent output
    with pytest.warns(UserWarning, match="extrapolates"):
        emu.sample(1, torch.tensor([50.0, 3.0, 0.04]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emu.sample(1, theta)
    # a set of the wrong dimension: the error names the expected shape
    n_max = sim.x_shape[0]
    with pytest.raises(ValueError, match=rf"\(\*batch, {n_max}, 3\)"):
        emu.log_prob(torch.zeros(2, n_max, 4), data.theta[:2])
    with pytest.raises(ValueError, match=rf"\(\*batch, {n_max}, 3\)"):
        emu.log_prob(torch.zeros(2, n_max - 1, 3), data.theta[:2])
    bad = data.x[:1].clone()
    bad[0, 0, 0] = 1.5  # outside the unit box
    with pytest.raises(ValueError, match="box_size"):
        emu.log_prob(bad, data.theta[:1])


def test_bad_event_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(n_max, d \+ 1\)"):
        PointCloudFlow((10,), 1)
    with pytest.raises(ValueError, match=r"\(n_max, d \+ 1\)"):
        PointCloudFlow((10, 6), 1)


def test_time_sampling_draws_training_times_from_its_density_and_bad_names_are_refused():
    """``time_sampling="late"`` (1 - t = (1 - u)²) has CDF 1 - √(1 - t): the loss's times (read off the velocity
    network's conditioning) pass a KS test against it, not against the uniform."""
    from scipy.stats import kstest

    m = PointCloudFlow((3, 3), 1, hidden_features=8, num_layers=1, time_sampling="late")
    assert PointCloudFlow(**m.config).config["time_sampling"] == "late"  # rebuilt from its config, as load does
    seen: list[torch.Tensor] = []

    def spy(u, mask, cond):
        seen.append(cond[:, 2].clone())  # [c (1), log(1 + N) / log(1 + n_max), t, ...]
        return torch.zeros_like(u)

    m._velocity = spy  # type: ignore[method-assign]
    x = _sets(4000, 3, 2, [2] * 4000, 1.0)
    m.loss(x, torch.zeros(4000, 1), generator=torch.Generator().manual_seed(0))
    t = seen[0].double().numpy()
    assert kstest(t, lambda v: 1.0 - np.sqrt(1.0 - v)).pvalue > 1e-3
    assert kstest(t, lambda v: v).pvalue < 1e-6  # and it is not uniform
    for bad in ("power", "Late", ""):
        with pytest.raises(ValueError, match="time_sampling must be one of"):
            PointCloudFlow((3, 3), 1, time_sampling=bad)


def test_ot_coupling_is_the_optimal_permutation_of_the_base_points_within_each_set():
    """Against brute force over all permutations of 6 points (torus distances), padding untouched; and the
    loss with ``coupling="ot"`` regresses exactly those permuted displacements."""
    import itertools

    from physgen.emulators.point_cloud import ot_permute
    from physgen.emulators.point_cloud_net import wrap_displacement

    g = torch.Generator().manual_seed(0)
    u0, u1 = torch.rand(3, 8, 2, generator=g, dtype=torch.float64), torch.rand(3, 8, 2, generator=g, dtype=torch.float64)
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[0, :6], mask[1, :1], mask[2, :5] = True, True, True  # a set of one point is left as drawn
    out = ot_permute(u0, u1, mask)
    assert torch.equal(out[~mask], u0[~mask]) and torch.equal(out[1], u0[1])

    def cost(a, b):
        return float((wrap_displacement(b - a) ** 2).sum())

    for b in (0, 2):
        n = int(mask[b].sum())
        best = min(cost(u0[b, list(p)], u1[b, :n]) for p in itertools.permutations(range(n)))
        assert cost(out[b, :n], u1[b, :n]) == pytest.approx(best, rel=1e-12)
        assert torch.equal(out[b, :n].sort(0).values, u0[b, :n].sort(0).values)  # the same points, reordered
    m = PointCloudFlow((8, 3), 1, hidden_features=8, num_layers=1, coupling="ot")
    assert PointCloudFlow(**m.config).config["coupling"] == "ot"  # rebuilt from its config, as load does
    m._velocity = lambda u, mask, cond: torch.zeros_like(u)  # type: ignore[method-assign]
    m.config["count_weight"] = 0.0  # the flow-matching part alone
    x = _sets(64, 8, 2, [6] * 64, 1.0)
    loss = m.loss(x, torch.zeros(64, 1), generator=torch.Generator().manual_seed(1))
    # with v = 0 the loss is the mean squared displacement per coordinate, here the optimal one's: far below
    # the independent coupling's 1/12 (a uniform minimum-image displacement in [-1/2, 1/2])
    m.config["coupling"] = "independent"
    independent = m.loss(x, torch.zeros(64, 1), generator=torch.Generator().manual_seed(1))
    assert float(independent) == pytest.approx(1 / 12, rel=0.1) and float(loss) < 0.5 * float(independent)
    with pytest.raises(ValueError, match="coupling must be one of"):
        PointCloudFlow((3, 3), 1, coupling="hungarian")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known miss (docs/emulators_point_clouds.md): after short training the emulated "
                   "sets are too clustered at r < σ (amplitude 5.0 vs the simulator's 2.9 in the first bin)")
def test_short_training_matches_the_count_distribution_and_the_clustering():
    """About 2000 steps (three minutes on the 2-core machine) on a narrow Thomas prior: N passes a KS test and
    the clustering amplitude ĝ(r) - 1 at r < 2σ is the simulator's within 50% (uniform points give 0). The
    issue's χ²/dof target needs the long workflow (docs/emulators_point_clouds.md)."""
    import numpy as np

    from physgen.diagnostics.emulator_points import compare_point_sets
    from simulators.galaxies import ThomasProcess

    sim = ThomasProcess(1.0, 2, bounds={"kappa": (10.0, 15.0), "mu": (3.0, 4.0), "sigma": (0.04, 0.05)})
    g = torch.Generator().manual_seed(0)
    theta = sample_prior(sim.prior, (8000,), generator=g)
    data = SimulationSet(theta, sim.simulate(theta, generator=g), meta={})
    emu = physgen.fit_emulator(data, model="point_cloud", model_options={"hidden_features": 32, "num_layers": 2},
                               max_epochs=8, max_time=900, batch_size=32, progress=False, num_threads=1, seed=0)
    t = torch.tensor([12.5, 3.5, 0.045])
    a = sim.simulate(t.expand(200, -1), generator=g)
    b = emu.sample(200, t, seed=1, steps=16)
    res = compare_point_sets(a.numpy(), b.numpy(), box_size=1.0, r_bins=torch.linspace(0, 0.09, 4).tolist(),
                             intensity=float(t[0] * t[1]))
    assert res["counts"]["p_value"] > 0.01
    amp_sim = np.asarray(res["pair_correlation"]["sim"]["g"]) - 1
    amp_emu = np.asarray(res["pair_correlation"]["emu"]["g"]) - 1
    assert amp_sim.min() > 0.5  # the simulator's sets are clustered at these separations
    assert np.abs(amp_emu / amp_sim - 1).max() < 0.5, (amp_emu, amp_sim)
