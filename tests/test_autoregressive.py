"""The shared autoregressive core (physgen.models.autoregressive): exact normalisation with a context,
the autoregressive property, exact sampling (chi-square against q), input errors."""

import itertools

import pytest
import torch
from scipy.stats import chisquare

from physgen.models.autoregressive import (
    AutoregressiveModel,
    RecurrentAutoregressive,
    make_ordering,
    previous_site_lookback,
)


def _all_configs(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


def _random_net(n: int, **kw) -> RecurrentAutoregressive:
    torch.manual_seed(0)
    net = RecurrentAutoregressive(n, **kw)
    with torch.no_grad():  # far from uniform conditionals
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.7)
    return net.double()


@pytest.mark.parametrize("kw", [
    {"hidden": 6, "context_features": 2},
    {"hidden": 5, "layers": 2, "cell": "lstm", "context_features": 1, "position_bias": True},
    {"hidden": 4, "context_features": 0, "order": [3, 0, 8, 1, 7, 2, 6, 4, 5]},
])
def test_exact_normalisation_for_every_context(kw):
    net = _random_net(9, **kw)
    cfg = _all_configs(9).double()
    C = kw["context_features"]
    contexts = [None] if C == 0 else [torch.randn(C, dtype=torch.float64) * 2 for _ in range(3)]
    totals = []
    for c in contexts:
        lp = net.log_prob(cfg, None if c is None else c.expand(len(cfg), C))
        totals.append(torch.logsumexp(lp, 0).item())
    assert max(abs(t) for t in totals) < 1e-10, totals
    if C:  # the context changes the distribution
        lp0 = net.log_prob(cfg, contexts[0].expand(len(cfg), C))
        lp1 = net.log_prob(cfg, contexts[1].expand(len(cfg), C))
        assert (lp0 - lp1).abs().max() > 1e-3


def test_lattice_lookback_normalised_and_autoregressive():
    """Reading visited neighbours (any earlier steps) keeps the factorisation exact."""
    lookback = torch.tensor([[-1, -1], [0, -1], [1, 0], [0, 2], [3, 1], [2, 4]])
    net = _random_net(6, hidden=5, context_features=1, lookback=lookback)
    cfg = _all_configs(6).double()
    ctx = torch.full((len(cfg), 1), 0.3, dtype=torch.float64)
    assert abs(torch.logsumexp(net.log_prob(cfg, ctx), 0).item()) < 1e-10
    # d logits_t / d x_s = 0 for s >= t
    x = torch.rand(1, 6, dtype=torch.float64, requires_grad=True)
    logits, _ = net._logits(x, ctx[:1])
    for t in range(6):
        (g,) = torch.autograd.grad(logits[0, t].sum(), x, retain_graph=True)
        assert g[0, t:].abs().max() == 0.0, (t, g)


def test_sampling_matches_log_q_chi_square():
    net = _random_net(6, hidden=6, context_features=1, position_bias=True)
    ctx = torch.tensor([0.5], dtype=torch.float64)
    cfg = _all_configs(6).double()
    with torch.no_grad():
        q = torch.exp(net.log_prob(cfg, ctx.expand(len(cfg), 1)))
    n = 40_000
    s = net.sample(n, ctx, generator=torch.Generator().manual_seed(1))
    idx = (s * (2 ** torch.arange(5, -1, -1, dtype=torch.float64))).sum(1).long()
    counts = torch.bincount(idx, minlength=64).double()
    keep = q * n >= 5
    expected = q[keep] * n
    observed = counts[keep]
    expected = expected * observed.sum() / expected.sum()
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3


def test_errors_name_the_expected_shapes():
    net = RecurrentAutoregressive(4, hidden=3, context_features=2)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        net.log_prob(torch.zeros(2, 5), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="context"):
        net.log_prob(torch.zeros(2, 4), None)
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        net.log_prob(torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="context_features=0"):
        RecurrentAutoregressive(4, hidden=3).log_prob(torch.zeros(2, 4), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="lookback"):
        RecurrentAutoregressive(3, lookback=torch.tensor([[-1], [1], [0]]))
    with pytest.raises(ValueError, match="permutation"):
        AutoregressiveModel(3, order=[0, 0, 1])


def test_orderings():
    assert make_ordering(4) == [0, 1, 2, 3]
    assert make_ordering(6, "snake", (2, 3)) == [0, 1, 2, 5, 4, 3]
    assert previous_site_lookback(3).view(-1).tolist() == [-1, 0, 1]
    with pytest.raises(ValueError, match="snake"):
        make_ordering(6, "snake")
