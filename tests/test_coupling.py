"""The lean coupling spline (physgen.models._coupling) is zuko's coupling RQS: same outputs, log-determinants,
inverse and gradients from the same state dict; its log-determinant equals the autograd Jacobian's."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn
from zuko.flows.coupling import GeneralCouplingTransform

from physgen.models._coupling import SplineCoupling
from physgen.models.flow import _RQS

K = 8


def _pair(dim: int, context: int, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    mask = torch.arange(dim) % 2 == 1
    net = dict(hidden_features=(32, 32), activation=nn.ReLU)
    ref = GeneralCouplingTransform(dim, context, mask=mask, univariate=partial(_RQS, slope=1e-3),
                                   shapes=[(K,), (K,), (K - 1,)], **net)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(2.0)  # far from the identity: strongly curved splines
    new = SplineCoupling(dim, context, mask, bins=K, **net)
    new.load_state_dict(ref.state_dict())  # the same keys: files stay interchangeable
    return ref, new


@pytest.mark.parametrize("dim,context", [(2, 2), (3, 1), (5, 0)])
def test_matches_zuko(dim, context):
    ref, new = _pair(dim, context)
    g = torch.Generator().manual_seed(1)
    x = 2.5 * torch.randn(400, dim, generator=g, dtype=torch.float64)  # some points outside [-5, 5]
    c = torch.randn(400, context, generator=g, dtype=torch.float64) if context else None
    ref, new = ref.double(), new.double()
    y_ref, l_ref = ref(c).call_and_ladj(x)
    y_new, l_new = new(c).call_and_ladj(x)
    torch.testing.assert_close(y_new, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(l_new, l_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(new(c).inv(y_new), ref(c).inv(y_ref), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(new(c).inv(y_new), x, rtol=1e-6, atol=1e-6)
    grads_ref = torch.autograd.grad((y_ref.square().sum() + l_ref.sum()), list(ref.parameters()))
    y_new, l_new = new(c).call_and_ladj(x)
    grads_new = torch.autograd.grad((y_new.square().sum() + l_new.sum()), list(new.parameters()))
    for a, b in zip(grads_new, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


def test_log_det_is_the_jacobian():
    _, new = _pair(4, 2)
    new = new.double()
    c = torch.randn(2, dtype=torch.float64)
    for x in torch.randn(5, 4, dtype=torch.float64):
        jac = torch.autograd.functional.jacobian(lambda v: new(c).call_and_ladj(v)[0], x)
        _, ladj = new(c).call_and_ladj(x)
        torch.testing.assert_close(ladj, torch.linalg.slogdet(jac)[1], rtol=1e-9, atol=1e-9)


def test_context_broadcasts_over_samples():
    _, new = _pair(2, 3)
    x = torch.randn(7, 5, 2)
    c = torch.randn(5, 3)
    y, ladj = new(c).call_and_ladj(x)
    assert y.shape == (7, 5, 2) and ladj.shape == (7, 5)
    y1, l1 = new(c.expand(7, 5, 3)).call_and_ladj(x)
    torch.testing.assert_close(y, y1)
    torch.testing.assert_close(ladj, l1)
