r"""Stochastic reconfiguration (natural gradient) for real parameters of a complex log psi.

With ``B`` samples, per-sample log-derivatives ``O_bk = d log psi(sigma_b) / d theta_k`` and
local energies ``E_b``, define the centred, scaled quantities

    Obar_b = (O_b - <O>) / sqrt(B),     e_b = (E_b - <E>) / sqrt(B),

and stack real and imaginary parts, ``Ot = [Re Obar; Im Obar]`` (2B x P), ``et = [Re e; Im e]``.
Then ``Re S = Ot^T Ot`` (the quantum geometric tensor restricted to real parameters) and
``Re F = Ot^T et`` is half the energy gradient. The SR update ``theta <- theta - lr * delta``
solves

* ``"cg"`` (standard SR):  ``(Re S + shift * I) delta = Re F`` by conjugate gradients with
  matrix-free products ``Ot^T (Ot v)`` (P x P matrix never formed);
* ``"minsr"`` (MinSR / kernel form, for P >> B):  ``delta = Ot^T (Ot Ot^T + shift * I)^{-1} et``,
  a (2B x 2B) Cholesky solve. Both equal ``(Re S + shift I)^{-1} Re F`` (push-through identity), so when
  there are fewer parameters than rows ``"minsr"`` solves the (P x P) system directly instead (cheaper).

Per-sample gradients use ``torch.func`` (``vmap`` of ``jacrev`` of a functional call).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

__all__ = ["per_sample_log_psi_grads", "sr_direction", "flat_params", "add_to_params", "has_complex_log_psi"]


def has_complex_log_psi(model: nn.Module) -> bool:
    """Whether ``Im log psi`` depends on the parameters (a learned phase or complex weights)."""
    return bool(getattr(model, "use_phase", False) or getattr(model, "is_complex", False))


def flat_params(model: nn.Module) -> Tensor:
    """All trainable parameters as one flat vector ``(P,)``."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


@torch.no_grad()
def add_to_params(model: nn.Module, delta: Tensor, scale: float = 1.0) -> None:
    """``theta += scale * delta`` for a flat ``delta`` ``(P,)`` in :func:`flat_params` order."""
    i = 0
    for p in model.parameters():
        if not p.requires_grad:
            continue
        n = p.numel()
        p.add_(delta[i : i + n].reshape(p.shape).to(p.dtype), alpha=scale)
        i += n


def per_sample_log_psi_grads(model: nn.Module, sigma: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """Per-sample ``d log psi / d theta``.

    Args:
        model: wavefunction with ``log_psi``.
        sigma: ``(B, N)`` configurations.
        chunk_size: vmap chunk size (memory control).

    Returns:
        ``(B, P)`` complex128 (or float64 when the model's phase is parameter-free).
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b for n, b in model.named_buffers()}
    cplx = has_complex_log_psi(model)

    def f(p, s):
        out = functional_call(model, (p, buffers), (s.unsqueeze(0),), kwargs={}, strict=False)
        out = out[0]
        return torch.stack([out.real, out.imag]) if cplx else out.real

    jac = vmap(jacrev(f), in_dims=(None, 0), chunk_size=chunk_size)(params, sigma)
    B = sigma.shape[0]
    if cplx:
        flat = torch.cat([jac[n].reshape(B, 2, -1) for n in names], -1).to(torch.float64)
        return torch.complex(flat[:, 0], flat[:, 1])
    return torch.cat([jac[n].reshape(B, -1) for n in names], -1).to(torch.float64)


def _cg(matvec, b: Tensor, *, tol: float = 1e-10, max_iter: int = 200) -> Tensor:
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = r @ r
    b2 = b @ b
    for _ in range(max_iter):
        Ap = matvec(p)
        alpha = rs / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = r @ r
        if rs_new <= tol**2 * b2:
            break
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


def sr_direction(
    O: Tensor,
    e_loc: Tensor,
    *,
    diag_shift: float = 1e-3,
    method: str = "minsr",
    cg_tol: float = 1e-8,
    cg_max_iter: int = 300,
) -> Tensor:
    """The SR direction ``delta = (Re S + shift I)^{-1} Re F``.

    Args:
        O: ``(B, P)`` per-sample log-derivatives (real or complex).
        e_loc: ``(B,)`` local energies (real or complex).
        diag_shift: Tikhonov shift added to S (``"cg"``) or to the kernel (``"minsr"``).
        method: ``"minsr"`` (kernel form) or ``"cg"`` (conjugate gradients on S).

    Returns:
        ``(P,)`` float64 direction; apply ``theta <- theta - lr * delta``.
    """
    B = O.shape[0]
    O = O.to(torch.complex128) if O.is_complex() else O.to(torch.float64)
    e = e_loc.to(torch.complex128)
    Ob = (O - O.mean(0)) / B**0.5
    eb = (e - e.mean()) / B**0.5
    if O.is_complex():
        Ot = torch.cat([Ob.real, Ob.imag], 0)
        et = torch.cat([eb.real, eb.imag], 0)
    else:
        Ot = Ob
        et = eb.real
    if method == "minsr" and Ot.shape[1] < Ot.shape[0]:
        # fewer parameters than (real) samples: the same direction from the P x P system, which is cheaper
        S = Ot.T @ Ot
        S.diagonal().add_(diag_shift)
        F = Ot.T @ et
        L, info = torch.linalg.cholesky_ex(S)
        if int(info) == 0:
            return torch.cholesky_solve(F[:, None], L)[:, 0]
        return torch.linalg.lstsq(S, F[:, None]).solution[:, 0]
    if method == "minsr":
        T = Ot @ Ot.T
        T.diagonal().add_(diag_shift)
        L, info = torch.linalg.cholesky_ex(T)
        if int(info) == 0:
            y = torch.cholesky_solve(et[:, None], L)[:, 0]
        else:
            y = torch.linalg.lstsq(T, et[:, None]).solution[:, 0]
        return Ot.T @ y
    if method == "cg":
        F = Ot.T @ et
        return _cg(lambda v: Ot.T @ (Ot @ v) + diag_shift * v, F, tol=cg_tol, max_iter=cg_max_iter)
    raise ValueError(f"unknown SR method {method!r}; use 'minsr' or 'cg'.")
