r"""Variational Monte Carlo: minimise ``E(theta) = <psi|H|psi> / <psi|psi>`` by sampling.

Each step draws ``B`` configurations from ``|psi|^2`` (exact ancestral samples for
autoregressive models, Metropolis chains otherwise), computes local energies ``E_b`` and

    E ~ mean(E_b),   Var ~ var(E_b),   grad_k E = 2 Re mean[ conj(O_bk - <O_k>) (E_b - E) ],

with ``O_bk = d log psi(sigma_b)/d theta_k``. Optimisers: ``"adam"`` (on the gradient above,
via the surrogate loss ``2 Re mean[conj(log psi) (E_b - E)]``), ``"sr"`` (stochastic
reconfiguration solved by CG) and ``"minsr"`` (the kernel form), see :mod:`physgen.quantum.sr`.

Reported per step: the energy with its error bar (``std / sqrt(B)`` for exact samples; the
spread of per-chain means for Metropolis), the variance, the V-score ``N Var(E) / E^2`` and
for Metropolis the split R-hat of the local energy over chains.

Safety: a step whose energy, variance or update is not finite, or whose energy exceeds the
best energy so far by more than ``divergence_threshold * (|E_best| + 1)``, raises
:class:`VMCDivergenceError` *before* the parameters are touched; checkpoints (the format of
:mod:`physgen.train.checkpoint`, kind ``"vmc"``: weights, Adam state, the sampling generators, the
Metropolis chains, step and history) are written only after finite steps, so the last checkpoint on
disk is always a good one, and :meth:`VMC.load_checkpoint` resumes from it exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from physgen.quantum.exact import exact_variational_energy
from physgen.quantum.hamiltonians import SpinHamiltonian, as_log_psi
from physgen.quantum.metropolis import MetropolisSampler, split_rhat
from physgen.quantum.schedule import scheduled_value
from physgen.quantum.sr import add_to_params, per_sample_log_psi_grads, sr_direction
from physgen.quantum.wavefunctions import SelfSampling, Wavefunction, as_wavefunction
from physgen.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["VMC", "VMCDivergenceError", "StepStats", "energy_stats", "exact_variational_energy"]


class VMCDivergenceError(RuntimeError):
    """VMC produced a non-finite or diverging energy or update; the parameters were not updated."""


@dataclass
class StepStats:
    """Statistics of one VMC step (energy of the samples drawn before the update)."""

    step: int
    energy: float
    error: float
    variance: float
    v_score: float
    rhat: float = float("nan")
    acceptance: float = float("nan")
    time_s: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def energy_stats(e_loc: Tensor, n_sites: int, n_chains: int | None = None) -> dict:
    """Mean, error bar, variance, V-score (and R-hat) of local energies.

    Args:
        e_loc: ``(B,)`` local energies (complex; the real part is used).
        n_sites: N for the V-score ``N Var / E^2``.
        n_chains: for Metropolis draws in draw-major order: error bar from per-chain means
            (when there are >= 8 chains) and split R-hat over chains.
    """
    e = e_loc.real.double()
    mean = float(e.mean())
    var = float(e.var(unbiased=True)) if len(e) > 1 else float("nan")
    err = math.sqrt(var / len(e)) if len(e) > 1 else float("nan")
    rhat = float("nan")
    if n_chains is not None and n_chains > 1 and len(e) % n_chains == 0:
        per = e.reshape(-1, n_chains)
        if per.shape[0] >= 4:
            rhat = split_rhat(per)
        if n_chains >= 8:
            err = max(err, float(per.mean(0).std(unbiased=True)) / math.sqrt(n_chains))
    vscore = n_sites * var / mean**2 if mean != 0 else float("nan")
    return {"energy": mean, "error": err, "variance": var, "v_score": vscore, "rhat": rhat}


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _restore_generator(ck, name: str, gen: torch.Generator) -> None:
    state = ck.tensors.get(f"generator.{name}")
    if state is not None and state.numel() == gen.get_state().numel():  # same device type
        gen.set_state(state)


@dataclass
class VMC:
    """Variational Monte Carlo driver.

    Args:
        hamiltonian: the Hamiltonian (its ``n_sites`` must equal the model's).
        model: wavefunction module (autoregressive: exact sampling; otherwise ``sampler``).
        n_samples: samples per step.
        optimizer: ``"minsr"``, ``"sr"`` (CG) or ``"adam"``.
        lr: learning rate (SR step size or Adam's lr).
        lr_final: if set, the rate decays from ``lr`` to ``lr_final`` over the steps of :meth:`run` (over steps
            0 .. ``total_steps`` - 1 of the whole run when ``total_steps`` is given, so a resumed run continues the
            schedule where it stopped).
        lr_schedule: the decay, ``"geometric"``, ``"cosine"`` or ``"constant"`` (:mod:`physgen.quantum.schedule`).
        warmup_steps: linear warm-up steps before the decay (0: none).
        diag_shift: SR diagonal shift.
        diag_shift_final: if set, the shift decays geometrically to it on the schedule of ``lr_final``.
        sampler: a :class:`MetropolisSampler` for non-autoregressive models.
        seed: seed of the sampling generator.
        chunk_size: chunk size for local-energy evaluation (memory control).
        divergence_threshold: see the module docstring.
        max_grad_norm: clip the (SR or plain) update to this norm (None: no clipping).
    """

    hamiltonian: SpinHamiltonian
    model: nn.Module
    n_samples: int = 1024
    optimizer: str = "minsr"
    lr: float = 0.05
    lr_final: float | None = None
    lr_schedule: str = "geometric"
    warmup_steps: int = 0
    diag_shift: float = 1e-3
    diag_shift_final: float | None = None
    sampler: MetropolisSampler | None = None
    seed: int = 0
    chunk_size: int | None = None
    divergence_threshold: float = 10.0
    max_grad_norm: float | None = None
    step_count: int = 0
    history: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._wf: Wavefunction = as_wavefunction(self.model)  # the model, typed by what VMC calls on it
        if self.hamiltonian.n_sites != self._wf.n_sites:
            raise ValueError(
                f"the Hamiltonian's lattice has {self.hamiltonian.n_sites} sites but the wavefunction has "
                f"{self._wf.n_sites}; build both on the same lattice."
            )
        if self.optimizer not in ("minsr", "sr", "adam"):
            raise ValueError(f"optimizer must be 'minsr', 'sr' or 'adam', got {self.optimizer!r}.")
        scheduled_value(self.lr, self.lr_final, 0, 1, self.lr_schedule, self.warmup_steps)  # validates both
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {self.n_samples}.")
        if getattr(self.model, "u1", False) and not self.hamiltonian.conserves_sz:
            raise ValueError(
                f"the wavefunction is restricted to Sz = 0 (u1=True) but {type(self.hamiltonian).__name__} does not "
                "conserve Sz; use u1=False."
            )
        # exact samples from the model itself (autoregressive) when it can draw them and no sampler is given
        self._exact = self._wf if isinstance(self._wf, SelfSampling) and self.sampler is None else None
        if self._exact is None and self.sampler is None:
            raise ValueError("this model cannot sample itself; pass sampler=MetropolisSampler(model, ...).")
        self.generator = torch.Generator(device=_device(self.model)).manual_seed(self.seed)
        self._adam = torch.optim.Adam(self.model.parameters(), lr=self.lr) if self.optimizer == "adam" else None
        self._best = math.inf
        self._lr_now = self.lr
        self._shift_now = self.diag_shift

    # ---------------------------------------------------------------------------------
    def _draw(self) -> tuple[Tensor, int | None]:
        if self._exact is not None:
            return self._exact.sample(self.n_samples, generator=self.generator), None
        assert self.sampler is not None, "__post_init__ requires a sampler for models that cannot sample themselves"
        return self.sampler.sample(self.n_samples), self.sampler.n_chains

    def step(self) -> StepStats:
        """One VMC step: sample, estimate, update. Raises :class:`VMCDivergenceError`."""
        t0 = time.perf_counter()
        sigma, n_chains = self._draw()
        # evaluate each distinct configuration once (late in training many samples repeat)
        uniq, inv = torch.unique(sigma, dim=0, return_inverse=True)
        with torch.no_grad():
            lp = as_log_psi(self._wf.log_psi(uniq))
        e_loc = self.hamiltonian.local_energy(self.model, uniq, lp, chunk_size=self.chunk_size)[inv]
        st = energy_stats(e_loc, self._wf.n_sites, n_chains)
        E = st["energy"]
        if not (math.isfinite(E) and math.isfinite(st["variance"])):
            raise VMCDivergenceError(
                f"step {self.step_count}: the energy is not finite (E={E}, Var={st['variance']}); parameters left "
                "unchanged and no checkpoint written. Lower lr, raise diag_shift or n_samples, and resume from the "
                "last good checkpoint."
            )
        if self._best < math.inf and E > self._best + self.divergence_threshold * (abs(self._best) + 1.0):
            raise VMCDivergenceError(
                f"step {self.step_count}: the energy diverged (E={E:.6g}, best so far {self._best:.6g}); parameters "
                "left unchanged. Lower lr or raise diag_shift and resume from the last good checkpoint."
            )
        if self.optimizer == "adam":
            assert self._adam is not None, "__post_init__ builds Adam for optimizer='adam'"
            self._adam_step(self._adam, sigma, e_loc)
        else:
            O = per_sample_log_psi_grads(self.model, uniq)[inv]
            delta = sr_direction(
                O, e_loc, diag_shift=self._shift_now, method="cg" if self.optimizer == "sr" else "minsr"
            )
            self._apply(delta)
        self._best = min(self._best, E)
        stats = StepStats(
            step=self.step_count,
            energy=E,
            error=st["error"],
            variance=st["variance"],
            v_score=st["v_score"],
            rhat=st["rhat"],
            acceptance=getattr(self.sampler, "last_acceptance", float("nan")),
            time_s=time.perf_counter() - t0,
        )
        self.step_count += 1
        self.history.append(stats.as_dict())
        return stats

    def _check_update(self, vec: Tensor, what: str) -> None:
        if not torch.isfinite(vec).all():
            raise VMCDivergenceError(
                f"step {self.step_count}: the {what} has NaN/inf entries; parameters left unchanged and no checkpoint "
                "written. Lower lr, raise diag_shift or n_samples, and resume from the last good checkpoint."
            )

    def _apply(self, delta: Tensor) -> None:
        self._check_update(delta, "SR update")
        if self.max_grad_norm is not None:
            n = float(delta.norm())
            if n > self.max_grad_norm:
                delta = delta * (self.max_grad_norm / n)
        add_to_params(self.model, delta, scale=-self._lr_now)

    def _adam_step(self, adam: torch.optim.Adam, sigma: Tensor, e_loc: Tensor) -> None:
        adam.zero_grad(set_to_none=True)
        lp = as_log_psi(self._wf.log_psi(sigma))
        centred = (e_loc - e_loc.mean()).detach().to(lp.dtype)
        loss = 2.0 * (torch.conj(lp) * centred).real.mean()
        loss.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        self._check_update(torch.cat([g.reshape(-1) for g in grads]), "gradient")
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        for g in adam.param_groups:
            g["lr"] = self._lr_now
        before = [p.detach().clone() for p in self.model.parameters()]
        adam.step()
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            with torch.no_grad():
                for p, b in zip(self.model.parameters(), before):
                    p.copy_(b)
            self._check_update(torch.tensor([float("nan")]), "Adam update")

    # ---------------------------------------------------------------------------------
    def run(
        self,
        n_steps: int,
        *,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 50,
        time_limit_s: float | None = None,
        log_every: int = 0,
        extra_config: dict | None = None,
        total_steps: int | None = None,
    ) -> list[dict]:
        """Run up to ``n_steps`` steps (counted from the current ``step_count``'s start).

        Args:
            n_steps: number of steps in this call.
            total_steps: length of the whole run, resumed parts included: the ``lr_final`` schedule then
                follows the global step count (None: it spans this call's ``n_steps``).
            checkpoint: file to write (atomically) every ``checkpoint_every`` steps and at the end.
            time_limit_s: stop after this wall time (seconds).
            log_every: print a line every this many steps (0: silent).
            extra_config: stored in the checkpoint's config.

        Returns:
            the history (list of per-step dicts) of this driver.
        """
        t0 = time.perf_counter()
        start = self.step_count
        origin = 0 if total_steps is not None else start  # the schedule runs from step `origin` over `span` steps
        span = total_steps if total_steps is not None else n_steps
        for k in range(n_steps):
            pos = self.step_count - origin
            self._lr_now = scheduled_value(self.lr, self.lr_final, pos, span, self.lr_schedule, self.warmup_steps)
            if self.diag_shift_final is not None:
                self._shift_now = scheduled_value(self.diag_shift, self.diag_shift_final, pos, span)
            st = self.step()
            if log_every and (st.step % log_every == 0 or k == n_steps - 1):
                print(
                    f"step {st.step:5d}  E = {st.energy:.8f} +- {st.error:.2e}  var = {st.variance:.3e}  "
                    f"v = {st.v_score:.2e}  ({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
            if checkpoint is not None and (self.step_count - start) % checkpoint_every == 0:
                self.save_checkpoint(checkpoint, extra_config)
            if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
                break
        if checkpoint is not None:
            self.save_checkpoint(checkpoint, extra_config)
        return self.history

    def save_checkpoint(self, path: str | Path, extra_config: dict | None = None) -> Path:
        """Write the weights, the Adam state, the generators, the Metropolis chains, step and history
        (kind ``"vmc"``, :mod:`physgen.train.checkpoint`). VMC draws only from its explicit generators, so
        torch's global RNG is not stored."""
        generators, tensors = {"sampling": self.generator}, {}
        if self.sampler is not None:
            if self.sampler.generator is not None:
                generators["sampler"] = self.sampler.generator
            if self.sampler.state is not None:
                tensors["sampler.state"] = self.sampler.state
        config = {
            "step": self.step_count,
            "best_energy": self._best if math.isfinite(self._best) else None,
            "history": self.history,
            "model": getattr(self.model, "config", {}),
            "hamiltonian": self.hamiltonian.to_config(),
            "optimizer": self.optimizer,
            "extra": extra_config or {},
        }
        return save_checkpoint(
            path,
            kind="vmc",
            modules={"model": self.model},
            optimizers={"adam": self._adam} if self._adam is not None else None,
            generators=generators,
            tensors=tensors,
            config=config,
            rng=False,
        )

    def load_checkpoint(self, path: str | Path) -> dict:
        """Restore what :meth:`save_checkpoint` wrote (or a format-1 VMC checkpoint: weights, Adam state, the
        sampling generator, step, history); returns its config. A generator state saved on another device
        type is left alone (the sampling stream then restarts from this driver's seed)."""
        ck = load_checkpoint(path, kind="vmc")
        cfg = ck.config
        ck.restore_module("model", self.model)
        if self._adam is not None and "adam" in ck.optimizers:
            ck.restore_optimizer("adam", self._adam)
        _restore_generator(ck, "sampling", self.generator)
        if self.sampler is not None and "sampler.state" in ck.tensors:
            self.sampler.state = ck.tensors["sampler.state"].to(self.sampler._device())
            if self.sampler.generator is not None:
                _restore_generator(ck, "sampler", self.sampler.generator)
        self.step_count = int(cfg["step"])
        self.history = list(cfg.get("history", []))
        self._best = cfg["best_energy"] if cfg.get("best_energy") is not None else math.inf
        return cfg

    def estimate(self, n_samples: int) -> dict:
        """Energy statistics from ``n_samples`` fresh samples (no update)."""
        old = self.n_samples
        self.n_samples = n_samples
        try:
            sigma, n_chains = self._draw()
        finally:
            self.n_samples = old
        e_loc = self.hamiltonian.local_energy(self.model, sigma, chunk_size=self.chunk_size or 200_000)
        return energy_stats(e_loc, self._wf.n_sites, n_chains)
