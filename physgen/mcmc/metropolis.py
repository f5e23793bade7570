r"""Batched adaptive random-walk Metropolis: many chains for many observations at once, in torch.

Layout: θ has shape ``(C, B, D)``: C chains for each of B observations (or B targets), D parameters.
One call of ``log_density`` per step evaluates every chain of every observation, so a likelihood
written in torch (a batched FFT, a batched network) is evaluated for all C·B points together, on
the device of ``initial``.

Proposal (per observation b, shared by its C chains):

    θ' = θ + s_b · L_b ε,   ε ~ N(0, I_D),   L_b L_bᵀ = Σ_b,

accepted with probability min(1, p(θ') / p(θ)) (symmetric proposal).

Adaptation (``adapt=True``, burn-in only; Haario et al. 2001, Andrieu & Thoms 2008):
    * Σ_b is the covariance of the states of all C chains of observation b, pooled over the
      burn-in steps since the last window restart (windows restart at 1/8, 1/4 and 1/2 of the
      burn-in, so the transient from the start is forgotten), plus a small jitter; it starts as
      the covariance of the initial states across chains (or a small multiple of I when C = 1).
    * log s_b follows a Robbins-Monro recursion towards the target acceptance rate
      (0.234, optimal for random-walk Metropolis in moderate dimension), starting at 2.38/√D.
After burn-in Σ_b and s_b are frozen, so the kept chain is a time-homogeneous Markov chain with
the target as its stationary distribution. ``adapt=False`` keeps the initial Σ_b and s_b.

Randomness comes only from ``generator`` (on ``initial``'s device): the same seed, device and
inputs give the same chains.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["batched_metropolis"]


def _check_initial(initial: Tensor) -> Tensor:
    if not torch.is_tensor(initial) or initial.dim() != 3:
        shape = tuple(initial.shape) if torch.is_tensor(initial) else type(initial).__name__
        raise ValueError(
            f"batched_metropolis: initial must be a tensor (C chains, B observations, D); got {shape}. "
            "For one observation use initial[:, None, :]."
        )
    if not initial.is_floating_point():
        raise ValueError(f"batched_metropolis: initial must be floating point; got {initial.dtype}")
    if not bool(torch.isfinite(initial).all()):
        raise ValueError("batched_metropolis: initial has NaN or inf entries")
    return initial


def _initial_covariance(theta: Tensor) -> Tensor:
    """(B, D, D) covariance of the C initial states of each observation, regularised."""
    C, B, D = theta.shape
    eye = torch.eye(D, dtype=theta.dtype, device=theta.device).expand(B, D, D)
    scale = theta.abs().amax(dim=(0, 2)).clamp_min(1.0)  # (B,)
    floor = (1e-2 * scale) ** 2
    if C < 2:
        return floor[:, None, None] * eye
    centred = theta - theta.mean(0)
    cov = torch.einsum("cbi,cbj->bij", centred, centred) / (C - 1)
    var = torch.diagonal(cov, dim1=-2, dim2=-1).mean(-1)  # (B,)
    jitter = torch.where(var > 0, 1e-6 * var, floor)
    return cov + jitter[:, None, None] * eye


def _cholesky(cov: Tensor) -> Tensor:
    L, info = torch.linalg.cholesky_ex(cov)
    if bool((info > 0).any()):  # not positive definite: fall back to the diagonal
        diag = torch.diagonal(cov, dim1=-2, dim2=-1).clamp_min(torch.finfo(cov.dtype).tiny)
        L = torch.where((info > 0)[:, None, None], torch.diag_embed(diag.sqrt()), L)
    return L


def batched_metropolis(
    log_density: Callable[[Tensor], Tensor],
    initial: Tensor,
    *,
    num_steps: int,
    burn_in: int | None = None,
    thin: int = 1,
    generator: torch.Generator | None = None,
    adapt: bool = True,
    target_acceptance: float = 0.234,
) -> tuple[Tensor, Tensor]:
    """Run C·B random-walk Metropolis chains together (module docstring).

    Args:
        log_density: ``theta: (C, B, D) -> (C, B)`` unnormalised log density, -inf outside the support.
        initial: ``(C, B, D)`` starting points, each with a finite log density.
        num_steps: steps after burn-in; every ``thin``-th is kept.
        burn_in: adaptation steps before the kept ones (discarded); default ``num_steps``.
        thin: keep one step in ``thin``.
        generator: the source of randomness (on ``initial``'s device); None uses torch's global RNG.
        adapt: adapt Σ_b and s_b during burn-in (else keep their initial values).
        target_acceptance: the acceptance rate the step size is tuned to, in (0, 1).

    Returns:
        ``(samples, acceptance)``: samples ``(num_steps // thin, C, B, D)`` in ``initial``'s dtype and
        device; acceptance ``(C, B)``, the fraction of accepted proposals after burn-in.

    Raises:
        ValueError: bad shapes or arguments, a log density of the wrong shape, or initial points
            with a log density that is -inf or NaN (start them inside the support).
    """
    theta = _check_initial(initial).clone()
    C, B, D = theta.shape
    num_steps, thin = int(num_steps), int(thin)
    burn_in = num_steps if burn_in is None else int(burn_in)
    if thin < 1 or num_steps < thin or burn_in < 0:
        raise ValueError(
            f"batched_metropolis: need thin >= 1, num_steps >= thin and burn_in >= 0; got num_steps={num_steps}, "
            f"thin={thin}, burn_in={burn_in}"
        )
    if not 0.0 < target_acceptance < 1.0:
        raise ValueError(f"batched_metropolis: target_acceptance must be in (0, 1); got {target_acceptance}")
    dev, dt = theta.device, theta.dtype

    with torch.no_grad():
        logp = log_density(theta)
        if tuple(logp.shape) != (C, B):
            raise ValueError(
                f"batched_metropolis: log_density must map (C, B, D) = {(C, B, D)} to (C, B); got {tuple(logp.shape)}"
            )
        bad = ~torch.isfinite(logp)
        if bool(bad.any()):
            c, b = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"batched_metropolis: {int(bad.sum())} initial points have log density -inf or NaN (first: chain {c}, "
                f"observation {b}, theta={theta[c, b].tolist()}); start every chain inside the support"
            )
        cov = _initial_covariance(theta)
        chol = _cholesky(cov)
        log_s = torch.full((B,), math.log(2.38 / math.sqrt(D)), dtype=dt, device=dev)
        restarts = {max(1, burn_in // 8), max(1, burn_in // 4), max(1, burn_in // 2)}
        n_acc = torch.zeros(C, B, dtype=torch.long, device=dev)
        acc_dt = dt if dev.type == "mps" else torch.float64  # MPS has no float64
        s_sum = torch.zeros(B, D, dtype=acc_dt, device=dev)
        s_outer = torch.zeros(B, D, D, dtype=acc_dt, device=dev)
        s_count = 0
        samples = torch.empty(num_steps // thin, C, B, D, dtype=dt, device=dev)
        for t in range(burn_in + num_steps):
            eps = torch.randn(C, B, D, generator=generator, dtype=dt, device=dev)
            step = torch.einsum("bij,cbj->cbi", chol, eps) * log_s.exp()[None, :, None]
            proposal = theta + step
            logp_new = log_density(proposal)
            log_u = torch.log(torch.rand(C, B, generator=generator, dtype=dt, device=dev))
            accept = log_u < (logp_new - logp)  # NaN or -inf proposals are rejected
            theta = torch.where(accept[..., None], proposal, theta)
            logp = torch.where(accept, logp_new, logp)
            if t < burn_in:
                if adapt:
                    rate = accept.to(dt).mean(0)  # (B,)
                    log_s = log_s + (rate - target_acceptance) / (1.0 + t) ** 0.6
                    if t in restarts:
                        s_sum.zero_()
                        s_outer.zero_()
                        s_count = 0
                    th = theta.to(acc_dt)
                    s_sum += th.sum(0)
                    s_outer += torch.einsum("cbi,cbj->bij", th, th)
                    s_count += C
                    if s_count > D + 1 and (t + 1) % 10 == 0:
                        mean = s_sum / s_count
                        emp = (s_outer - s_count * mean[:, :, None] * mean[:, None, :]) / (s_count - 1)
                        var = torch.diagonal(emp, dim1=-2, dim2=-1).mean(-1).clamp_min(torch.finfo(acc_dt).tiny)
                        eye = torch.eye(D, dtype=acc_dt, device=dev)
                        chol = _cholesky((emp + 1e-6 * var[:, None, None] * eye).to(dt))
            else:
                k = t - burn_in
                n_acc += accept
                if k % thin == thin - 1:
                    samples[k // thin] = theta
    return samples, n_acc.to(dt) / num_steps
