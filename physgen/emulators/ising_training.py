r"""Training an :class:`~physgen.emulators.ising.IsingEmulator`: by maximum likelihood on MCMC samples,
or variationally from the Boltzmann weight alone.

Maximum likelihood (:func:`fit_maximum_likelihood`): minimise ``-E_data[log q(s | β)] / N`` over
(β, s) pairs from the simulator, through :func:`physgen.fit` (the emulator's ``loss`` hook), so
early stopping, checkpoints and seeds are those of every other family.

Variational (:func:`fit_variational`, a variational autoregressive network, Wu, Wang & Zhang,
PRL 122, 080602 (2019)): minimise the variational free energy

    β F_q = E_q[ln q(s | β) + β H(s)] = β F + KL(q || p)

by REINFORCE: ``∇ β F_q = E_q[(f(s) - b) ∇ ln q(s | β)]`` with ``f = ln q + β H`` (detached) and
the baseline ``b`` the mean of f over the draws of the same β (it lowers the variance and
leaves the gradient unbiased since ``E_q[∇ ln q] = 0``). Each step draws ``n_betas`` values of β
uniformly in the emulator's ``beta_range`` (the context) and ``batch_size / n_betas`` exact samples
for each. β annealing: for the first ``anneal_steps`` steps the energy is weighted by
``a_t β`` with ``a_t`` rising linearly from ``anneal_start`` to 1, so training starts at high
temperature, where q can cover both ordered states, and cools to the target (the context stays β).
The learning rate follows a cosine decay to ``lr * lr_final`` over the steps after the annealing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from physgen.emulators.ising import IsingEmulator

__all__ = ["fit_maximum_likelihood", "fit_variational"]


def fit_maximum_likelihood(emulator: IsingEmulator, beta: Tensor, spins: Tensor, **fit_options):
    """Train ``emulator`` on MCMC configurations by maximum likelihood with :func:`physgen.fit`.

    Args:
        emulator: the :class:`IsingEmulator` (trained in place).
        beta: ``(n,)`` or ``(n, 1)``, the β of each configuration (inside ``emulator.beta_range``).
        spins: ``(n, L, L)`` ±1 equilibrium configurations at those β.
        **fit_options: :func:`physgen.fit` options (``batch_size``, ``lr``, ``max_epochs``, ``max_time``,
            ``seed``, ...); ``progress`` defaults to False.

    Returns:
        :class:`physgen.train.FitResult`; the emulator holds the weights of the best validation loss
        (nats per spin).
    """
    from physgen.train.loop import fit

    beta = torch.as_tensor(beta).reshape(-1, 1).to(torch.float32)
    spins = emulator._check_spins(torch.as_tensor(spins)).to(torch.float32)
    if spins.shape[0] != beta.shape[0]:
        raise ValueError(f"beta and spins must have the same number of rows; got {beta.shape[0]} and {spins.shape[0]}.")
    if not bool((spins.abs() == 1).all()):
        raise ValueError("spins must be ±1.")
    emulator.betas(beta, beta.shape[0])  # warns about training β outside beta_range
    fit_options.setdefault("progress", False)
    return fit(emulator, (beta, spins), **fit_options)


def fit_variational(
    emulator: IsingEmulator,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    n_betas: int = 8,
    lr: float = 1e-3,
    lr_final: float = 0.05,
    anneal_steps: int | None = None,
    anneal_start: float = 0.2,
    clip_norm: float | None = 1.0,
    max_time: float | None = None,
    seed: int = 0,
    callback: Callable[[int, dict], None] | None = None,
) -> list[dict]:
    """Train ``emulator`` variationally at the β of its ``beta_range`` (module docstring).

    Args:
        emulator: the :class:`IsingEmulator` (trained in place, left in eval mode).
        steps: optimisation steps.
        batch_size: exact samples per step (split over ``n_betas`` values of β; a multiple of it).
        n_betas: β values per step (1 when ``beta_range`` is a single β).
        lr, lr_final: Adam's learning rate, and the fraction of it the cosine decay ends at.
        anneal_steps: steps of β annealing (default: steps // 4; 0 = none).
        anneal_start: the first step's fraction a_0 of β (0 < a_0 <= 1).
        clip_norm: gradient-norm clipping (None = off).
        max_time: wall-clock budget in seconds (stops early).
        seed: seeds the β draws and the samples.
        callback: called as ``callback(step, entry)`` after each step.

    Returns:
        History: one dict per step with ``step``, ``anneal`` (a_t), ``free_energy_per_spin`` (the batch's
        mean F_q / N over its β, annealed weights), ``kl_proxy`` (the batch's variance of f, which is 0 for
        q = p) and ``seconds``.
    """
    lo, hi = emulator.beta_range
    if n_betas < 1 or batch_size < n_betas or batch_size % n_betas:
        raise ValueError(f"batch_size ({batch_size}) must be a positive multiple of n_betas ({n_betas}).")
    if lo == hi:
        n_betas = 1
    if not 0 < anneal_start <= 1:
        raise ValueError(f"anneal_start must be in (0, 1], got {anneal_start}.")
    anneal_steps = steps // 4 if anneal_steps is None else int(anneal_steps)
    dev, dt = emulator.device, emulator.dtype
    gen = torch.Generator(device=dev).manual_seed(seed)
    opt = torch.optim.Adam(emulator.parameters(), lr=lr)

    def lr_factor(step: int) -> float:
        if step < anneal_steps:
            return 1.0
        frac = (step - anneal_steps) / max(1, steps - anneal_steps)
        return lr_final + (1 - lr_final) * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    per = batch_size // n_betas
    history: list[dict] = []
    t0 = time.perf_counter()
    emulator.train()
    for step in range(steps):
        a = 1.0 if step >= anneal_steps else anneal_start + (1 - anneal_start) * step / max(1, anneal_steps)
        b = lo + (hi - lo) * torch.rand(n_betas, generator=gen, device=dev, dtype=dt)
        beta = b.repeat_interleave(per)
        s = emulator.sample(batch_size, beta, generator=gen, warn=False)
        lq = emulator.log_prob(s, beta, warn=False)
        with torch.no_grad():
            f = (lq + a * beta * emulator.energy(s)).view(n_betas, per)
            adv = (f - f.mean(1, keepdim=True)).reshape(-1)
        loss = (adv * lq).mean() / emulator.n_sites
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(emulator.parameters(), clip_norm)
        opt.step()
        sched.step()
        entry = {
            "step": step,
            "anneal": a,
            "free_energy_per_spin": float((f.mean(1) / (a * b)).mean()) / emulator.n_sites,
            "kl_proxy": float(f.var(1).mean()),
            "seconds": time.perf_counter() - t0,
        }
        history.append(entry)
        if callback is not None:
            callback(step, entry)
        if max_time is not None and entry["seconds"] > max_time:
            break
    emulator.eval()
    return history
