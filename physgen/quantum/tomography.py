r"""Quantum state tomography: maximum-likelihood fit of a wavefunction to Pauli-basis records.

Data: ``n`` shots, each a basis ``b`` (one Pauli letter per site) and an outcome ``s`` (0/1 per
site), see :mod:`physgen.quantum.measurements`. Model: any wavefunction module with
``n_sites`` and ``log_psi(sigma) -> (B,)`` complex (``log|psi| + i phase``).

Likelihood. The probability of outcome ``s`` in basis ``b`` is ``|psi_b(s)|^2 / Z`` with

    psi_b(s) = sum_{s'} prod_i U_{b_i}[s_i, s'_i] psi(s'),        Z = sum_s |psi(s)|^2,

and the loss is the negative log-likelihood per shot, ``-mean log |psi_b(s)|^2 + log Z``.
Two exact evaluations of ``psi_b(s)``:

* ``"local"``: sum over the ``2^k`` configurations ``s'`` that differ from ``s`` only on the ``k``
  non-Z sites of the shot (``U_Z`` is the identity); ``log_psi`` is called on ``B 2^k``
  configurations. Cheap for bases with few X/Y sites (Torlai et al., Nat. Phys. 14, 447 (2018)).
* ``"dense"``: evaluate ``psi`` on all ``2^N`` configurations and rotate the whole vector per
  distinct basis (``O(N 2^N)``); needed for global bases such as ``X^N`` (a GHZ phase is only
  visible there), and limited to ``N <= 20``.

``"auto"`` picks ``local`` when every shot of the batch has at most 6 non-Z sites.
Autoregressive models (those with ``log_prob``) are exactly normalised, ``log Z = 0``; other
models (the RBM) are normalised by exact enumeration of ``Z`` over ``2^N`` states (``N <= 20``).
A Z-basis-only fit determines ``|psi|`` and therefore suits positive states (TFIM ground states);
general states need X/Y data.

Figures of merit: the quantum fidelity ``F = |<psi_exact|psi_model>|^2`` of the normalised
states, by exact enumeration over ``2^N`` configurations, and observables (``<Z_i>``, ``<X_i>``,
``<Z_i Z_j>``) of the dense model state against the exact ones.

A whole job from a TOML file (exact state -> measurement records -> model -> fit -> figures) is
``physgen tomography CONFIG.toml`` (:mod:`physgen.cli.tomography`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from physgen.quantum.measurements import (
    MeasurementRecords,
    _unitaries,
    enumerate_configs,
    rotate_dense,
)
from physgen.quantum.wavefunctions import as_wavefunction

__all__ = [
    "is_normalised",
    "model_state",
    "log_partition",
    "rotated_log_psi",
    "nll",
    "fidelity",
    "observables",
    "observable_errors",
    "TomographyResult",
    "fit_tomography",
]

_DENSE_MAX_N = 20
_LOCAL_MAX_K = 6


def _call_log_psi(model: nn.Module, sigma: Tensor) -> Tensor:
    out = as_wavefunction(model).log_psi(sigma)
    if isinstance(out, tuple):  # (log|psi|, sign) wavefunctions
        log_abs, sign = out
        return torch.complex(log_abs, torch.where(torch.as_tensor(sign) < 0, math.pi, 0.0).to(log_abs.dtype))
    if not out.is_complex():
        return torch.complex(out, torch.zeros_like(out))
    return out


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def is_normalised(model: nn.Module) -> bool:
    """True for exactly normalised (autoregressive) models: those with a ``log_prob`` method."""
    return callable(getattr(model, "log_prob", None))


def _check_dense_n(n: int, what: str) -> None:
    if n > _DENSE_MAX_N:
        raise ValueError(
            f"{what} enumerates all 2**N configurations and is limited to N <= {_DENSE_MAX_N}; got N = {n}. "
            "Use an autoregressive model and bases with few non-Z sites (method='local')."
        )


def _dense_log_psi(model: nn.Module, chunk: int = 1 << 14) -> Tensor:
    n = as_wavefunction(model).n_sites
    _check_dense_n(n, "the dense wavefunction")
    configs = enumerate_configs(n, device=_model_device(model))
    return torch.cat([_call_log_psi(model, c) for c in configs.split(chunk)])


def log_partition(model: nn.Module) -> Tensor:
    """``log Z = log sum_s |psi(s)|^2`` (0 for normalised models, else exact enumeration)."""
    if is_normalised(model):
        return torch.zeros((), device=_model_device(model))
    return torch.logsumexp(2.0 * _dense_log_psi(model).real, dim=0)


@torch.no_grad()
def model_state(model: nn.Module) -> np.ndarray:
    """The model's normalised dense state ``(2**N,)`` complex128 (exact enumeration)."""
    lp = _dense_log_psi(model).to(torch.complex128).cpu()
    lp = lp - 0.5 * torch.logsumexp(2.0 * lp.real, dim=0)
    return torch.exp(lp).numpy()


def _rotated_local(model: nn.Module, outcomes: Tensor, bases: Tensor) -> Tensor:
    """``log psi_b(s)`` by summing over the non-Z sites of each shot (groups of equal k)."""
    nonz = bases != 0
    k_per = nonz.sum(dim=1)
    out: Tensor | None = None
    for k in torch.unique(k_per).tolist():
        rows = torch.nonzero(k_per == k).squeeze(1)
        s, b = outcomes[rows], bases[rows]
        if k == 0:
            lp = _call_log_psi(model, s)
        else:
            m = 2**k
            # positions of the non-Z sites (stable sort keeps them in site order): (r, k)
            pos = torch.argsort((~nonz[rows]).to(torch.int8), dim=1, stable=True)[:, :k]
            bits = enumerate_configs(k, device=s.device)  # (m, k)
            sp = s.unsqueeze(1).repeat(1, m, 1)  # (r, m, N)
            sp.scatter_(2, pos.unsqueeze(1).expand(-1, m, -1), bits.unsqueeze(0).expand(len(rows), -1, -1))
            lpp = _call_log_psi(model, sp.reshape(-1, s.shape[1])).reshape(len(rows), m)
            u = _unitaries(lpp.dtype, s.device)  # (3, 2, 2)
            code = torch.gather(b, 1, pos)  # (r, k)
            sk = torch.gather(s, 1, pos)  # (r, k)
            coef = u[code.unsqueeze(1), sk.unsqueeze(1), bits.unsqueeze(0)].prod(dim=2)  # (r, m)
            shift = lpp.real.max(dim=1, keepdim=True).values.detach()
            lp = shift.squeeze(1) + torch.log((coef * torch.exp(lpp - shift)).sum(dim=1))
        if out is None:
            out = torch.empty(outcomes.shape[0], dtype=lp.dtype, device=lp.device)
        out = out.index_put((rows,), lp)
    if out is None:  # no shots: the (0,) tensor of the model's dtype
        return _call_log_psi(model, outcomes)
    return out


def _rotated_dense(model: nn.Module, outcomes: Tensor, bases: Tensor) -> Tensor:
    """``log psi_b(s)`` by rotating the full dense model vector for each distinct basis."""
    full = _dense_log_psi(model)
    shift = full.real.max().detach()
    amp = torch.exp(full - shift)
    weights = 2 ** torch.arange(outcomes.shape[1] - 1, -1, -1, device=outcomes.device)
    idx = (outcomes * weights).sum(dim=1)
    uniq, inverse = torch.unique(bases, dim=0, return_inverse=True)
    out = torch.empty(outcomes.shape[0], dtype=full.dtype, device=full.device)
    for j, b in enumerate(uniq):
        rows = torch.nonzero(inverse == j).squeeze(1)
        out = out.index_put((rows,), shift + torch.log(rotate_dense(amp, b)[idx[rows]]))
    return out


def rotated_log_psi(model: nn.Module, records: MeasurementRecords, *, method: str = "auto") -> Tensor:
    """Unnormalised ``log psi_b(s)`` of every shot: ``(n,)`` complex (differentiable).

    Args:
        model: a wavefunction module (``n_sites``, ``log_psi``).
        records: shots with ``outcomes (n, N)`` and ``bases (n, N)``.
        method: ``"local"``, ``"dense"`` or ``"auto"`` (see the module docstring).
    """
    if records.n_sites != model.n_sites:
        raise ValueError(
            f"the records have {records.n_sites} sites per shot but the model has {model.n_sites}; "
            "build the model with n_sites matching the measured system."
        )
    if method not in ("auto", "local", "dense"):
        raise ValueError(f"method must be 'auto', 'local' or 'dense', got {method!r}.")
    dev = _model_device(model)
    outcomes, bases = records.outcomes.to(dev), records.bases.to(dev)
    if method == "auto":
        kmax = int((bases != 0).sum(dim=1).max()) if len(records) else 0
        method = "local" if kmax <= _LOCAL_MAX_K or model.n_sites > _DENSE_MAX_N else "dense"
    if method == "dense":
        return _rotated_dense(model, outcomes, bases)
    return _rotated_local(model, outcomes, bases)


def nll(model: nn.Module, records: MeasurementRecords, *, method: str = "auto") -> Tensor:
    """Negative log-likelihood per shot, ``-mean log(|psi_b(s)|^2 / Z)`` (a scalar)."""
    lp = rotated_log_psi(model, records, method=method)
    return -(2.0 * lp.real).mean() + log_partition(model)


def _as_dense(psi) -> np.ndarray:
    if isinstance(psi, nn.Module):
        return model_state(psi)
    v = np.asarray(psi.detach().cpu() if isinstance(psi, Tensor) else psi).astype(np.complex128).ravel()
    return v / np.linalg.norm(v)


def fidelity(model_or_psi, psi_exact) -> float:
    """Quantum state fidelity ``|<psi_exact|psi_model>|^2`` of the normalised states (exact)."""
    a, b = _as_dense(model_or_psi), _as_dense(psi_exact)
    if a.shape != b.shape:
        raise ValueError(f"states of different sizes: {a.shape[0]} vs {b.shape[0]} amplitudes.")
    return float(abs(np.vdot(b, a)) ** 2)


def observables(psi) -> dict[str, np.ndarray]:
    """Exact one- and two-point observables of a dense state (or a model, by enumeration).

    Returns:
        ``{"mz": (N,) <Z_i>, "mx": (N,) <X_i>, "zz": (N, N) <Z_i Z_j>, "mz_total": <sum Z>/N}``.
    """
    v = _as_dense(psi)
    n = int(round(math.log2(v.shape[0])))
    p = np.abs(v) ** 2
    s = 1.0 - 2.0 * enumerate_configs(n).numpy()  # (2**N, N)
    mz = p @ s
    zz = (s * p[:, None]).T @ s
    t = v.reshape([2] * n)
    mx = np.array([np.real(np.vdot(t, np.flip(t, axis=i))) for i in range(n)])
    return {"mz": mz, "mx": mx, "zz": zz, "mz_total": np.array(mz.mean())}


def observable_errors(psi_model, psi_exact) -> dict[str, float]:
    """Largest absolute error of each observable of :func:`observables`."""
    a, b = observables(psi_model), observables(psi_exact)
    return {k: float(np.max(np.abs(a[k] - b[k]))) for k in a}


@dataclass
class TomographyResult:
    """Outcome of :func:`fit_tomography`.

    Attributes:
        nll: final training NLL per shot.
        fidelity: final quantum fidelity (``None`` without an exact state).
        history: one dict per evaluation: ``epoch``, ``nll``, ``fidelity`` (if known), ``time_s``.
        time_s: wall time of the fit.
    """

    nll: float
    fidelity: float | None
    history: list[dict] = field(default_factory=list)
    time_s: float = 0.0


class _RecordsNLL(nn.Module):
    """What :func:`physgen.fit` trains for tomography: ``loss(outcomes (B, N), bases (B, N))`` is the NLL per
    shot of a batch of measurement records; ``training_step`` adds the per-step cosine schedule and clipping."""

    def __init__(
        self, model: nn.Module, method: str, schedule: str, total_steps: int, max_grad_norm: float | None
    ) -> None:
        super().__init__()
        self.model, self.method, self.schedule = model, method, schedule
        self.total_steps, self.max_grad_norm = max(total_steps, 1), max_grad_norm
        self._sched: torch.optim.lr_scheduler.LambdaLR | None = None

    def loss(self, outcomes: Tensor, bases: Tensor) -> Tensor:
        return nll(self.model, MeasurementRecords(outcomes, bases), method=self.method)

    def training_step(self, batch, optimizers, *, generator=None) -> float:
        opt = optimizers["model"]
        if self._sched is None and self.schedule == "cosine":  # decays to 1% over the run, per step
            total = self.total_steps
            self._sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda t: 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
            )
        loss = self.loss(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        opt.step()
        if self._sched is not None:
            self._sched.step()
        return float(loss.detach())


def fit_tomography(
    model: nn.Module,
    records: MeasurementRecords,
    *,
    epochs: int = 50,
    batch_size: int = 500,
    lr: float = 1e-2,
    schedule: str = "cosine",
    method: str = "auto",
    psi_exact=None,
    eval_every: int = 5,
    max_grad_norm: float | None = 10.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    validation_fraction: float = 0.1,
) -> TomographyResult:
    """Maximum-likelihood training of ``model`` on measurement records, through :func:`physgen.fit` (Adam,
    minibatches; a share of the shots is held out, and the weights with the lowest held-out NLL are kept).

    Args:
        model: wavefunction module (on the device to train on).
        records: the shots (at least 2); their number of sites must match ``model.n_sites``.
        epochs, batch_size, lr: optimisation budget (``lr`` follows ``schedule`` per step:
            ``"cosine"`` decays to 1% over the run, ``"constant"`` keeps it); all ``epochs`` run.
        method: likelihood evaluation, ``"auto" | "local" | "dense"``.
        psi_exact: ``(2**N,)`` exact state; when given, the fidelity is tracked (never used to train).
        eval_every: epochs between history entries (and the last epoch).
        max_grad_norm: gradient clipping (``None`` disables).
        generator: CPU generator that seeds the split and the minibatch order (None: torch's global RNG).
        progress: print one line per evaluation.
        validation_fraction: share of the shots held out to choose the returned weights.

    Raises:
        ValueError: records that do not match the model, or bad settings.
        FloatingPointError: the loss became non-finite (lower lr).
    """
    from physgen.train import TrainingError, fit

    if records.n_sites != model.n_sites:
        raise ValueError(f"the records have {records.n_sites} sites per shot but the model has {model.n_sites}.")
    if len(records) == 0:
        raise ValueError("no measurement records to train on.")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}.")
    n_train = len(records) - min(max(1, int(round(validation_fraction * len(records)))), len(records) - 1)
    task = _RecordsNLL(model, method, schedule, epochs * math.ceil(n_train / batch_size), max_grad_norm)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    history: list[dict] = []
    t0 = time.perf_counter()

    def evaluate(epoch: int, module: nn.Module, result) -> None:
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            entry = {"epoch": epoch + 1, "nll": result.history[-1]["train_loss"], "time_s": time.perf_counter() - t0}
            if psi_exact is not None:
                entry["fidelity"] = fidelity(model, psi_exact)
            history.append(entry)
            if progress:
                print("  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))

    try:
        res = fit(
            task,
            (records.outcomes, records.bases),
            batch_size=batch_size,
            max_epochs=epochs,
            patience=epochs,
            validation_fraction=validation_fraction,
            schedule=None,
            device=_model_device(model),
            seed=seed,
            progress=False,
            optimizer=lambda params: torch.optim.Adam(params, lr=lr),
            callbacks=[evaluate],
        )
    except TrainingError as err:
        raise FloatingPointError(f"the tomography loss became non-finite ({err}); lower lr.") from None
    fid = fidelity(model, psi_exact) if psi_exact is not None else None
    return TomographyResult(
        nll=res.history[-1]["train_loss"], fidelity=fid, history=history, time_s=time.perf_counter() - t0
    )
