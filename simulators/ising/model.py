r"""The 2D Ising model on the periodic L×L square lattice as a batched simulator.

Model, units and conventions::

    H(s) = -J Σ_<ij> s_i s_j - h Σ_i s_i,   s_i = ±1 on the L×L torus (2N bonds, N = L²),
    p(s | θ) = exp(-β H(s)) / Z(β, J, h),   k_B = 1.

J > 0 (ferromagnet) and h are in energy units; β = 1/T is in inverse energy units, so the physics depends on βJ and
βh only. θ is ``(β,)`` (J and h fixed, default J = 1, h = 0) or ``(β, h)`` (``params=("beta", "h")``). The critical
point of the infinite lattice is at β_c J = ½ ln(1 + √2) ≈ 0.4407 (``BETA_C``).

Simulation: every θ gets its own lattice (an independent chain), started from a random configuration for β J ≤ β_c
and h = 0, otherwise from the ordered state (all spins along h, or of a random sign when h = 0, so that the m → -m
symmetry is kept), and run for ``sweeps`` sweeps of

* ``algorithm="metropolis"``: checkerboard Metropolis (or heat bath) on all lattices at once, int8 spin bits,
  per-lattice threshold tables, no exp in the loop (:mod:`simulators.ising.kernels`); one sweep = one update attempt
  per site; ``algorithm="multispin"``: the same chain, 64 lattices per uint64 word (:mod:`simulators.ising.multispin`);
* ``algorithm="wolff"``: Wolff single-cluster updates on bit-packed rows, also correct with a field
  (:mod:`simulators.ising.wolff`); by default one sweep = enough cluster flips to flip about N spins per lattice
  (the number is adapted during the first half of the equilibration and then frozen), or ``cluster_updates`` flips.
  Clusters are large near and below T_c and tiny at high T, where Metropolis is much cheaper.

``simulate`` returns the last configuration ``(*B, L, L)`` float32 ±1, or (``output="summary"``) its sufficient
statistics ``(b, m) = (Σ_<ij> s_i s_j / N, Σ_i s_i / N)``, ``(*B, 2)``; :meth:`Ising.run` and :meth:`Ising.observables`
give ⟨E⟩/N, ⟨|m|⟩, C/N, χ/N and the Binder cumulant with errors (:mod:`simulators.ising.stats`).

Likelihood: ``log p(x | θ) = β J B(x) + β h M(x) - ln Z(θ)``, ln Z by enumeration for L ≤ 4 (any h) or by Kaufman's
finite-torus formula (any L, h = 0) (:mod:`simulators.ising.likelihood`); -inf outside the prior. Summaries x = (b, m)
and the exact grid posterior (:meth:`Ising.exact_posterior`, :mod:`simulators.ising.posterior`): docs/simulators_ising.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution

from physgen.priors import BoxUniform
from simulators.ising.chains import Chain, make_chain
from simulators.ising.multispin import load_kernels
from simulators.ising.exact import BETA_C
from simulators.ising.likelihood import check_x, ising_log_z, sufficient_statistics
from simulators.ising.posterior import GridPosterior, prior_device
from simulators.ising.stats import thermodynamics

__all__ = ["Ising", "BETA_C"]

_PARAMS = {("beta",), ("beta", "h")}
_DEFAULT_SWEEPS = {"metropolis": 1000, "multispin": 1000, "wolff": 100}


def _resolve_device(device: str | torch.device | None) -> torch.device | None:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return None if device is None else torch.device(device)


class Ising:
    """Batched 2D Ising simulator (one independent equilibrated lattice per θ).

    Args:
        L: linear size; an even integer >= 2 (the checkerboard needs a bipartite torus).
        J: coupling, > 0 (energy units).
        h: fixed field (energy units) when θ = (β,); None when ``"h"`` is in params (None means 0 otherwise).
        params: ``("beta",)`` or ``("beta", "h")``.
        prior: a Distribution over θ, event shape ``(D,)``. Default: BoxUniform over β ∈ [0.2, 0.8] (T from
            1.25 to 5, T_c ≈ 2.269), and h ∈ [-1, 1] when h is a parameter.
        sweeps: equilibration sweeps before the returned configuration (default 1000 for Metropolis, 100 for
            Wolff). Metropolis needs more near T_c for large L (τ ~ L^2.17); use Wolff there.
        thin: sweeps between recorded measurements in :meth:`run` / :meth:`observables`.
        algorithm: ``"metropolis"``, ``"multispin"`` (the same chain, 64 lattices per word, numba) or ``"wolff"``.
        output: ``"spins"`` (x = ``(L, L)`` ±1) or ``"summary"`` (x = ``(2,)``: bond sum, magnetisation per spin).
        rule: Metropolis acceptance, ``"metropolis"`` (ΔE = 0 flips with probability 63/64, see
            :mod:`simulators.ising.kernels`) or ``"heatbath"``.
        init: ``"auto"``, ``"random"`` or ``"ordered"`` start.
        cluster_updates: Wolff cluster flips per sweep (an int >= 1), or ``"auto"``: about N flipped spins per
            sweep and lattice (adapted in the first half of the equilibration, then frozen; see ``chains``).
        device: device of the default prior (``"auto"`` = cuda if available); simulation follows θ's device.
    """

    name = "ising"
    x_kind = "lattice"  # "vector" for output="summary" (set per instance)

    def __init__(
        self,
        L: int,
        *,
        J: float = 1.0,
        h: float | None = None,
        params: Sequence[str] = ("beta",),
        prior: Distribution | None = None,
        sweeps: int | None = None,
        thin: int = 1,
        algorithm: str = "metropolis",
        output: str = "spins",
        rule: str = "metropolis",
        init: str = "auto",
        cluster_updates: int | str = "auto",
        device: str | torch.device | None = None,
    ):
        if isinstance(L, bool) or not isinstance(L, int) or L < 2 or L % 2:
            raise ValueError(
                f"L must be an even integer >= 2 (the checkerboard update needs a bipartite torus); got L={L!r}"
            )
        if not (isinstance(J, (int, float)) and math.isfinite(J) and J > 0):
            raise ValueError(f"J must be a finite number > 0 (ferromagnet); got J={J!r}")
        params = tuple(params)
        if params not in _PARAMS:
            raise ValueError(f"params must be ('beta',) or ('beta', 'h'); got {params!r}")
        if "h" in params and h is not None:
            raise ValueError("h is a parameter (params includes 'h'), so the fixed field h must be None")
        if h is not None and not math.isfinite(h):
            raise ValueError(f"h must be finite; got h={h!r}")
        if algorithm not in _DEFAULT_SWEEPS:
            raise ValueError(f"algorithm must be 'metropolis', 'multispin' or 'wolff'; got {algorithm!r}")
        if algorithm == "multispin":
            load_kernels()  # numba missing: an ImportError saying so here, not at simulate
        if output not in ("spins", "summary"):
            raise ValueError(f"output must be 'spins' or 'summary'; got {output!r}")
        if rule not in ("metropolis", "heatbath"):
            raise ValueError(f"rule must be 'metropolis' or 'heatbath'; got {rule!r}")
        if init not in ("auto", "random", "ordered"):
            raise ValueError(f"init must be 'auto', 'random' or 'ordered'; got {init!r}")
        sweeps = _DEFAULT_SWEEPS[algorithm] if sweeps is None else sweeps
        checks: list[tuple[str, int | str, int]] = [("sweeps", sweeps, 0), ("thin", thin, 1)]
        if cluster_updates != "auto":
            checks.append(("cluster_updates", cluster_updates, 1))
        for name, v, lo in checks:
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}; got {name}={v!r}")
        dev = _resolve_device(device)
        if prior is None:
            low, high = ([0.2], [0.8]) if params == ("beta",) else ([0.2, -1.0], [0.8, 1.0])
            prior = BoxUniform(low, high, device=dev)
        if tuple(prior.event_shape) != (len(params),):
            raise ValueError(
                f"prior must have event shape ({len(params)},) for params {params}; got {tuple(prior.event_shape)}"
            )
        self.L, self.J, self.params, self.prior = L, float(J), params, prior
        self.h = None if "h" in params else float(h or 0.0)
        self.sweeps, self.thin, self.algorithm, self.output = sweeps, thin, algorithm, output
        self.rule, self.init, self.cluster_updates = rule, init, cluster_updates
        self.n_sites = L * L
        self.x_shape: tuple[int, ...] = (L, L) if output == "spins" else (2,)
        self.x_kind = "lattice" if output == "spins" else "vector"

    @property
    def param_names(self) -> tuple[str, ...]:
        """The names of θ's components, in order."""
        return tuple(self.params)

    @property
    def config(self) -> dict:
        """JSON-serialisable configuration (the prior is recorded by its repr)."""
        return {
            "L": self.L,
            "J": self.J,
            "h": self.h,
            "params": list(self.params),
            "prior": repr(self.prior),
            "sweeps": self.sweeps,
            "thin": self.thin,
            "algorithm": self.algorithm,
            "output": self.output,
            "rule": self.rule,
            "init": self.init,
            "cluster_updates": self.cluster_updates,
        }

    def __repr__(self) -> str:
        return f"Ising({', '.join(f'{k}={v!r}' for k, v in self.config.items())})"

    # ------------------------------------------------------------------ helpers
    def _split_theta(self, theta: Tensor, check: bool = True) -> tuple[Tensor, Tensor, torch.Size]:
        """theta ``(*B, D)`` -> beta ``(M,)``, h ``(M,)`` (float64), batch shape."""
        D = len(self.params)
        if not isinstance(theta, Tensor):
            raise TypeError(f"theta must be a torch.Tensor of shape (*B, {D}); got {type(theta).__name__}")
        if theta.dim() == 0 or theta.shape[-1] != D:
            raise ValueError(f"theta must have shape (*B, {D}) for params {self.params}; got {tuple(theta.shape)}")
        if check:
            if not bool(torch.isfinite(theta).all()):
                raise ValueError("theta contains NaN or inf")
            inside = self._inside(theta)
            if not bool(inside.all()):
                bad = theta.reshape(-1, D)[~inside.reshape(-1)][0].tolist()
                raise ValueError(
                    f"theta outside the prior support ({self.prior!r}); first offending value {bad} "
                    f"(params {self.params}). Sample from the prior or pass a prior that covers it."
                )
        batch = theta.shape[:-1]
        flat = theta.reshape(-1, D).to(torch.float64)
        beta = flat[:, 0]
        h = flat[:, 1] if self.h is None else torch.full_like(beta, self.h)  # self.h is None iff D == 2
        return beta, h, batch

    def _prior_device(self) -> torch.device:
        return prior_device(self.prior)

    def _inside(self, theta: Tensor) -> Tensor:
        """Whether θ ``(*B, D)`` is in the prior's support: ``(*B,)`` bool on θ's device."""
        support = self.prior.support
        if support is None:
            raise ValueError(f"the prior {self.prior!r} has no support to check θ against; use one with a support")
        return support.check(theta.to(self._prior_device())).to(theta.device)

    def _init_spins(self, beta: Tensor, h: Tensor, generator: torch.Generator | None) -> Tensor:
        M, L, dev = beta.shape[0], self.L, beta.device
        rand = (2 * torch.randint(0, 2, (M, L, L), generator=generator, device=dev) - 1).to(torch.int8)
        if self.init == "random":
            return rand
        sign = torch.where(h != 0, torch.sign(h), 2.0 * torch.randint(0, 2, (M,), generator=generator, device=dev) - 1)
        ordered = sign.to(torch.int8).view(M, 1, 1).expand(M, L, L)
        if self.init == "ordered":
            return ordered.clone()
        use_ordered = ((beta * self.J > BETA_C) | (h != 0)).view(M, 1, 1)
        return torch.where(use_ordered, ordered, rand)

    def _chain(self, beta: Tensor, h: Tensor, generator: torch.Generator | None) -> Chain:
        spins = self._init_spins(beta, h, generator)
        J = torch.full_like(beta, self.J)  # algorithm="multispin": simulators/ising/multispin.py
        return make_chain(self.algorithm, spins, beta, J, h, self.rule, self.cluster_updates, generator)

    def _check_generator(self, theta: Tensor, generator: torch.Generator | None) -> None:
        if generator is not None and generator.device.type != theta.device.type:
            raise ValueError(
                f"generator is on {generator.device} but theta is on {theta.device}; create the generator on theta's device"
            )

    # ------------------------------------------------------------------ simulation
    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """One equilibrated configuration per θ.

        Args:
            theta: ``(*B, D)`` inside the prior support (else ValueError).
            generator: torch generator on theta's device (None = torch's global RNG).

        Returns:
            ``(*B, L, L)`` float32 ±1, or ``(*B, 2)`` float32 summaries (b, m).
        """
        self._check_generator(theta, generator)
        if theta.numel() == 0 and theta.dim() > 0 and theta.shape[-1] == len(self.param_names):  # an empty batch
            return torch.zeros(
                *theta.shape[:-1], *((2,) if self.output == "summary" else (self.L, self.L)), device=theta.device
            )
        beta, h, batch = self._split_theta(theta)
        chain = self._chain(beta, h, generator)
        chain.equilibrate(self.sweeps)
        if self.output == "summary":
            b, m = chain.measure()
            x = torch.stack([b, m], -1).to(torch.float32) / self.n_sites
            return x.reshape(*batch, 2)
        return chain.spins().to(torch.float32).reshape(*batch, self.L, self.L)

    def run(
        self,
        theta: Tensor,
        n_measure: int,
        *,
        n_chains: int = 1,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Equilibrate (``sweeps``), then record E and M every ``thin`` sweeps.

        Args:
            theta: ``(*B, D)``.
            n_measure: measurements per chain (>= 1).
            n_chains: independent chains (lattices) per θ (>= 1).
            generator: torch generator on theta's device.

        Returns:
            dict with ``energy`` (total E) and ``magnetisation`` (M = Σ s_i), float64
            ``(*B, n_chains, n_measure)``, and ``spins``: the final configurations,
            float32 ``(*B, n_chains, L, L)``.
        """
        for name, v in (("n_measure", n_measure), ("n_chains", n_chains)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {name}={v!r}")
        self._check_generator(theta, generator)
        beta, h, batch = self._split_theta(theta)
        beta, h = beta.repeat_interleave(n_chains), h.repeat_interleave(n_chains)
        chain = self._chain(beta, h, generator)
        chain.equilibrate(self.sweeps)
        es, ms = [], []
        for _ in range(n_measure):
            chain.advance(self.thin)
            b, m = chain.measure()
            es.append(-self.J * b.to(torch.float64) - h * m.to(torch.float64))
            ms.append(m.to(torch.float64))
        shape = (*batch, n_chains, n_measure)
        return {
            "energy": torch.stack(es, -1).reshape(shape),
            "magnetisation": torch.stack(ms, -1).reshape(shape),
            "spins": chain.spins().to(torch.float32).reshape(*batch, n_chains, self.L, self.L),
        }

    def observables(
        self,
        theta: Tensor,
        n_measure: int = 1000,
        *,
        n_chains: int = 16,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Thermodynamic observables with error bars for each θ.

        Args:
            theta: ``(*B, D)``.
            n_measure: measurements per chain, ``thin`` sweeps apart.
            n_chains: independent lattices per θ; errors are a jackknife over chains when
                n_chains >= 8, else over time blocks.
            generator: torch generator on theta's device.

        Returns:
            dict of float64 ``(*B,)`` tensors: ``energy_per_spin``, ``abs_magnetisation``,
            ``specific_heat_per_spin``, ``susceptibility_per_spin``, ``binder`` (each with
            ``_err``), ``tau_int_energy`` and ``tau_int_abs_magnetisation`` in sweeps.
        """
        series = self.run(theta, n_measure, n_chains=n_chains, generator=generator)
        beta, _, batch = self._split_theta(theta, check=False)
        out = thermodynamics(series["energy"], series["magnetisation"], beta.reshape(batch), self.n_sites)
        out["tau_int_energy"] = out["tau_int_energy"] * self.thin
        out["tau_int_abs_magnetisation"] = out["tau_int_abs_magnetisation"] * self.thin
        return out

    # ------------------------------------------------------------------ likelihood
    def log_z(self, theta: Tensor) -> Tensor:
        """Exact ln Z(θ), ``(*B, D)`` -> ``(*B,)`` float64 (enumeration for L <= 4, else Kaufman at h = 0)."""
        beta, h, batch = self._split_theta(theta, check=False)
        return ising_log_z(self.L, self.J, self.h, beta, h).reshape(batch)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """Exact log p(x | θ); -inf where θ is outside the prior support.

        Args:
            theta: ``(*B, D)``.
            x: ``(*B, *x_shape)`` (broadcast against theta's batch): spins ±1, or summaries (b, m).

        Returns:
            ``(*B,)`` float64 (for a summary at L > 4 and h = 0: up to the θ-independent ln g(B, M)).

        Raises:
            ValueError: x of another shape (the message names ``x_shape``) or spins other than ±1.
            NotImplementedError: a field (h != 0) at L > 4 (the message names the exact configurations).
        """
        beta, h, batch = self._split_theta(theta, check=False)
        check_x(x, self.x_shape, self.L, self.output)
        B, M, log_g = sufficient_statistics(x.to(theta.device), self.L, self.output, self.h)
        shape = torch.broadcast_shapes(batch, B.shape)
        beta_b, h_b = beta.reshape(batch), h.reshape(batch)
        ll = log_g + beta_b * self.J * B + beta_b * h_b * M - self.log_z(theta)
        return torch.where(self._inside(theta), ll, torch.full_like(ll, -math.inf)).expand(shape)

    def grid_posterior(self, x: Tensor, n_grid: int | None = None) -> GridPosterior:
        """The exact posterior of one observation ``x (*x_shape)`` on a grid over the prior box.

        ``n_grid`` nodes per dimension (default 4097 for θ = (β,), 513 for (β, h)); see
        :mod:`simulators.ising.posterior`. Raises as :meth:`log_likelihood` does (shape, field at L > 4).
        """
        check_x(x, self.x_shape, self.L, self.output)
        if x.dim() != len(self.x_shape):
            raise ValueError(f"grid_posterior takes one observation of shape {self.x_shape}; got {tuple(x.shape)}")
        dev = self._prior_device()
        x = x.to(dev)

        def log_post(theta: Tensor) -> Tensor:
            theta = theta.to(dev)
            return self.prior.log_prob(theta).to(torch.float64) + self.log_likelihood(theta, x)

        return GridPosterior(log_post, self.prior, n_grid)

    def exact_posterior(self, x: Tensor, num_samples: int, *, seed: int = 0) -> Tensor:
        """``num_samples`` draws from the exact posterior of ``x (*x_shape)``: float32 ``(num_samples, D)``."""
        gen = torch.Generator().manual_seed(int(seed))
        return self.grid_posterior(x).sample(int(num_samples), generator=gen).to(torch.float32)
