r"""Gaussian and lognormal random fields of the linear matter density in a periodic box.

Both simulators take θ = (Ω_m, σ8) by default (any of Ω_m, σ8, Ω_b, h, n_s can be made free
with ``params=...``; the rest are fixed to ``fixed`` or the Planck-like defaults Ω_b = 0.049,
h = 0.6766, n_s = 0.9665), evaluate the EH98 linear P(k, z) (with BAO unless
``wiggles=False``; :mod:`simulators.cosmology.spectrum`) on the grid modes, and return the
overdensity δ of shape ``(*B, n, n)`` or ``(*B, n, n, n)``. Box size in Mpc/h, k in h/Mpc.

2D fields are the density projected through a slab of comoving depth d (``slab_depth``,
default = box_size), δ_2D = (1/d) ∫ δ dz, whose spectrum in the Limber (thin-window)
approximation, accurate for k ≫ 1/d, is P_2D(k) = P_3D(k) / d in (Mpc/h)^2.
Fourier conventions, generation and the P(k) estimator: :mod:`simulators.cosmology.fourier`.

GaussianField: c_k = sqrt(P(k)/V) z_k (Hermitian z), δ = irfftn(c, norm="forward"); exact
log-likelihood :func:`simulators.cosmology.fourier.gaussian_log_likelihood`.

LognormalField (Coles & Jones 1991): δ_LN = exp(G - σ_G^2/2) - 1 with G Gaussian, ξ_G = ln(1 + ξ).
On the grid: ξ(x) = (1/V) Σ_k P(k) e^{ik·x}; since P(0) = 0 forces Σ_x ξ = 0 while
Σ_x ln(1 + ξ) < 0, the k = 0 mode of the target is shifted, ξ -> ξ + a with a > 0 solving
Σ_x ln(1 + ξ + a) = 0 (Newton), which changes no k ≠ 0 mode. Then ξ_G = ln(1 + ξ + a),
P_G(k) = V · DFT_forward[ξ_G] (P_G(0) = 0), and σ_G^2 = (1/V) Σ_k P_G(k) = ξ_G(0) (the
theoretical variance). Then ⟨δ_LN(x) δ_LN(y)⟩ = e^{ξ_G} - 1 = ξ + a: the output spectrum equals
P(k) exactly at every k ≠ 0, provided P_G >= 0. If P_G < 0 at some modes: depth
-min P_G / max P_G <= ``max_negative_depth`` (default 1e-3) -> a warning and those modes are
set to 0 (the output power then deviates slightly); beyond it -> ValueError naming the k.

Speed: P is evaluated on the grid's distinct |k| only, and with θ = (Ω_m, σ8) from an
interpolation table in Ω_m (:mod:`simulators.cosmology.power_table`), so a field costs one
table lookup, one randn, a multiply and an irfftn whatever the batch (benchmarks/fields_speed.py).
Amplitude grids of up to ``cache_size`` distinct θ per call are also kept in a small LRU cache
(repeated θ skip the lookup; a call with more distinct θ computes them all and bypasses it).

Likelihoods (exact, batched over θ, differentiable in θ):

* GaussianField: ln p(δ | θ) = -1/2 Σ_{k≠0} [|δ_k|^2 / (N_c λ_k) + ln(2π λ_k)], λ_k = N_c P(k) / V,
  a sum over the distinct |k|: one FFT of the data, then K - 1 terms per θ.
* LognormalField: ln(1 + δ) is the Gaussian field G of spectrum P_G up to its box mean, so
  ln p(δ | θ) = ln N(G'; 0, C_G(θ)) + Σ_i ln 1/(1 + δ_i), the Gaussian term on the k ≠ 0 modes G' of
  ln(1 + δ). With ``zero_mean=True`` (the default) the simulator returns 1 + δ = e^G / mean_box e^G,
  the density contrast against the box's own mean density (as a survey measures it): mean δ = 0 in
  every box and the box mean of G is not observed, so this is the exact density of δ on the
  (N - 1)-dimensional set {mean δ = 0}: the Jacobian of δ -> G' there is Π_i 1/(1 + δ_i) times
  mean_i (1 + δ_i) = 1. With ``zero_mean=False`` (δ = e^{G - σ_G^2/2} - 1, G with a zero box mean,
  the mean of δ zero only in expectation) every δ satisfies mean ln(1 + δ) = -σ_G^2(θ)/2 exactly, a
  deterministic relation the likelihood ignores: a flexible encoder could learn more than it.
* ConvergenceMap: no tractable likelihood with shape noise (a lognormal field convolved with
  white noise: the density needs an integral over the N-dimensional latent field).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from simulators.cosmology.cosmo_field import CosmoField
from simulators.cosmology.fourier import gaussian_log_likelihood, hermitian_noise

__all__ = ["GaussianField", "LognormalField"]


class GaussianField(CosmoField):
    """Gaussian random field δ with the EH98 linear power spectrum in a periodic box.

    Args:
        n: cells per side (>= 2, odd or even).
        box_size: side length L in Mpc/h.
        dim: 2 or 3.
        params: names of the free parameters, in θ order (default ``("Omega_m", "sigma8")``).
        fixed: values of the non-free parameters (defaults in ``DEFAULT_COSMOLOGY``).
        bounds: prior bounds ``{name: (low, high)}`` (defaults: Ω_m U(0.1, 0.5), σ8 U(0.6, 1.0),
            Ω_b U(0.03, 0.07), h U(0.55, 0.85), n_s U(0.87, 1.07)).
        z: redshift (P is scaled by D(z)^2).
        wiggles: EH98 with BAO (default) or the no-wiggle fit.
        dtype: float32 (default) or float64 output.
        cache_size: number of θ whose amplitude grid is kept.
        slab_depth: 2D only, depth d (Mpc/h) of the projected slab, P_2D = P_3D / d (default box_size).

    ``simulate(theta: (*B, D)) -> (*B, n, n[, n])``; θ outside the prior box raises ValueError.
    ``log_likelihood(theta, x) -> (*B,)`` is exact (zero-mean hyperplane), -inf outside the prior.
    """

    name = "gaussian_field"

    def _amplitude_uncached(self, theta: Tensor) -> Tensor:
        lnP = self.log_power_modes(theta)
        amp = (0.5 * (lnP - math.log(self.grid(theta.device).volume))).exp()
        return self.modes(theta.device).gather(amp)

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """θ ``(*B, D)`` -> δ ``(*B, *x_shape)`` in ``self.dtype`` on θ's device."""
        return self._gaussian(theta, generator)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """Exact ln p(x | θ), ``theta: (*B, D)``, ``x: (*B, *x_shape)`` (broadcast) -> ``(*B,)`` float64.

        Differentiable in θ. Outside the prior support it is -inf (no error, for samplers).
        """
        if theta.shape[-1] != self.cosmo.dim:
            raise ValueError(f"theta must have shape (*B, {self.cosmo.dim}); got {tuple(theta.shape)}")
        _check_x(self, x)
        inside = self.cosmo.inside(theta)
        safe = torch.where(inside.unsqueeze(-1), theta, ((self.cosmo.low + self.cosmo.high) / 2).to(theta))
        ll = _gaussian_ll_modes(self, x.double(), self.log_power_modes(safe))
        return torch.where(inside, ll, torch.full_like(ll, -math.inf))


def _check_x(sim: CosmoField, x: Tensor) -> None:
    if not torch.is_tensor(x) or x.dim() < sim.dim or tuple(x.shape[x.dim() - sim.dim :]) != sim.x_shape:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(
            f"x must be fields of shape (*B, {', '.join(map(str, sim.x_shape))}) (this simulator's x_shape "
            f"{sim.x_shape}: n={sim.n}, dim={sim.dim}); got {got}. Simulate the observation on the same grid"
        )


def _gaussian_ll_modes(sim: CosmoField, field: Tensor, lnP: Tensor) -> Tensor:
    """ln N(field; 0, C(P)) on the zero-mean hyperplane, summed over distinct |k|: ``(*Bx, *x_shape)``
    float64 fields and ``(*B, K - 1)`` ln P -> ``(*broadcast(Bx, B),)``."""
    grid = sim.grid(field.device)
    ms = sim.modes(field.device)
    dk = torch.fft.rfftn(field, dim=grid.fft_dims)
    S = ms.sums(dk.real**2 + dk.imag**2, sim.dim)  # (*Bx, K - 1): Σ w |δ_k|^2 per |k|
    c = math.log(grid.n_cells / grid.volume)
    S = S / grid.n_cells
    if S.dim() == 1 and lnP.dim() == 2:  # one field, many θ: blocks of θ that stay in cache
        rows = max(1, (1 << 16) // lnP.shape[-1])
        return torch.cat([_mode_sum(S, blk + c, ms.counts) for blk in lnP.split(rows)])
    return _mode_sum(S, lnP + c, ms.counts)


def _mode_sum(S: Tensor, ln_lam: Tensor, counts: Tensor) -> Tensor:
    return -0.5 * (S * torch.exp(-ln_lam) + counts * (math.log(2 * math.pi) + ln_lam)).sum(-1)


class LognormalField(CosmoField):
    """Lognormal (Coles-Jones) field whose power spectrum is the EH98 linear P(k) (module docstring).

    Same arguments as :class:`GaussianField`, plus
        max_negative_depth: tolerated depth -min P_G / max P_G of negative Gaussian power
            (warned about and clipped); deeper raises a ValueError naming the k.

        zero_mean: δ against the box's own mean density, mean δ = 0 in every box (default; the likelihood
            is exact, module docstring), or False for δ = e^{G - σ_G^2/2} - 1 (mean 0 in expectation).

    ``simulate(theta: (*B, D)) -> (*B, n, n[, n])``, δ >= -1.
    """

    name = "lognormal_field"

    def __init__(
        self,
        n: int,
        box_size: float,
        dim: int = 2,
        *,
        max_negative_depth: float = 1e-3,
        zero_mean: bool = True,
        **kwargs,
    ):
        super().__init__(n, box_size, dim, **kwargs)
        self.max_negative_depth = float(max_negative_depth)
        self.zero_mean = bool(zero_mean)

    @property
    def config(self) -> dict:
        return {**super().config, "max_negative_depth": self.max_negative_depth, "zero_mean": self.zero_mean}

    def gaussian_power_grid(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """P_G(k) on the rfft grid ``(*B, *rshape)`` (after clipping) and σ_G^2 ``(*B,)``, float64."""
        grid = self.grid(theta.device)
        P = self.power_grid(theta)
        V, dims = grid.volume, grid.fft_dims
        xi = torch.fft.irfftn(P / V, s=grid.shape, dim=dims, norm="forward")
        flat = xi.reshape(*xi.shape[: xi.dim() - self.dim], -1)
        if bool((flat.min(-1).values <= -1).any()):
            raise ValueError(
                f"the correlation function reaches {float(flat.min()):.3g} <= -1, so ln(1 + ξ) is undefined: no "
                f"lognormal field has this spectrum on this grid (σ^2 = ξ(0) = {float(flat[..., 0].max()):.3g}); "
                "use a larger box_size, a coarser grid (smaller n) or a smaller sigma8"
            )
        a = torch.zeros(flat.shape[:-1], dtype=torch.float64, device=theta.device)
        for _ in range(50):  # Newton on f(a) = mean ln(1 + ξ + a) = 0, monotone from a = 0
            f = torch.log1p(flat + a.unsqueeze(-1)).mean(-1)
            a = a - f / (1.0 / (1.0 + flat + a.unsqueeze(-1))).mean(-1)
            if bool((f.abs() < 1e-15).all()):
                break
        xi_g = torch.log1p(xi + a.reshape(*a.shape, *([1] * self.dim)))
        PG = V * torch.fft.rfftn(xi_g, dim=dims, norm="forward").real
        nonzero = grid.m2 > 0
        PG = torch.where(nonzero, PG, torch.zeros_like(PG))
        top = PG.flatten(-self.dim).max(-1).values
        low, arg = PG.flatten(-self.dim).min(-1)
        depth = -low / top
        if bool((depth > self.max_negative_depth).any()):
            i = int(depth.flatten().argmax())
            kbad = float(grid.kmag.flatten()[arg.flatten()[i]])
            raise ValueError(
                f"the Gaussian power of the lognormal transform is negative, P_G = {float(low.flatten()[i]):.3g} "
                f"(depth {float(depth.flatten()[i]):.2e} of max P_G > max_negative_depth={self.max_negative_depth:g}) "
                f"at k = {kbad:.4g} h/Mpc: this spectrum is not realisable as a lognormal field on this grid. "
                "Use a larger box_size, a smaller n, a smaller sigma8, or raise max_negative_depth"
            )
        if bool((depth > 1e-12).any()):
            i = int(depth.flatten().argmax())
            kbad = float(grid.kmag.flatten()[arg.flatten()[i]])
            warnings.warn(
                f"lognormal field: the Gaussian power is slightly negative (depth {float(depth.flatten()[i]):.2e}, "
                f"most negative at k = {kbad:.4g} h/Mpc); those modes are set to 0, so the output P(k) deviates "
                "slightly from the input there",
                stacklevel=6,
            )
            PG = PG.clamp_min(0.0)
        var = (PG * grid.weight).flatten(-self.dim).sum(-1) / V
        return PG, var

    def _amplitude_uncached(self, theta: Tensor) -> Tensor:
        PG, var = self.gaussian_power_grid(theta)
        amp = (PG / self.grid(theta.device).volume).sqrt()
        return torch.cat([amp.flatten(1), var.unsqueeze(-1)], dim=-1)  # σ_G^2 rides along in the cache

    def _amplitude_and_variance(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        packed = self._cached_rows(theta)
        grid = self.grid(theta.device)
        return packed[..., :-1].reshape(*theta.shape[:-1], *grid.rshape), packed[..., -1]

    def amplitude(self, theta: Tensor) -> Tensor:
        """Per-mode amplitude sqrt(P_G/V) of the Gaussian field G ``(*B, *rshape)`` (cached per θ)."""
        return self._amplitude_and_variance(theta)[0]

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """θ ``(*B, D)`` -> δ_LN ``(*B, *x_shape)`` in ``self.dtype`` on θ's device."""
        amp, var = self._amplitude_and_variance(theta)
        grid = self.grid(theta.device)
        var = var.reshape(*theta.shape[:-1], *([1] * self.dim))
        z = hermitian_noise(tuple(theta.shape[:-1]), grid, generator=generator, dtype=self.dtype, device=theta.device)
        g = torch.fft.irfftn(z * amp, s=grid.shape, dim=grid.fft_dims, norm="forward")
        if self.zero_mean:  # 1 + δ = e^G / mean_box e^G: the box mean of G (a function of θ) is not observed
            box = tuple(range(-self.dim, 0))
            e = torch.exp(g - g.amax(dim=box, keepdim=True))
            return e / e.mean(dim=box, keepdim=True) - 1
        return torch.expm1(g - 0.5 * var)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """Exact ln p(δ | θ) of the k ≠ 0 modes of G = ln(1 + δ) + σ_G^2/2 plus the Jacobian (module docstring).

        ``theta: (*B, D)``, ``x: (*B, *x_shape)`` (broadcast) -> ``(*B,)`` float64; -inf outside the prior
        or where some δ <= -1 (impossible for a lognormal field). Differentiable in θ.
        """
        if theta.shape[-1] != self.cosmo.dim:
            raise ValueError(f"theta must have shape (*B, {self.cosmo.dim}); got {tuple(theta.shape)}")
        _check_x(self, x)
        inside = self.cosmo.inside(theta)
        safe = torch.where(inside.unsqueeze(-1), theta, ((self.cosmo.low + self.cosmo.high) / 2).to(theta))
        xd = x.double()
        valid = (xd > -1).flatten(-self.dim).all(-1)
        g = torch.log1p(torch.where(xd > -1, xd, torch.zeros_like(xd)))  # the box mean (σ_G^2/2 shift) is not used
        PG, _ = self.gaussian_power_grid(safe)
        grid = self.grid(theta.device)
        ll = gaussian_log_likelihood(g, torch.where(grid.m2 > 0, PG, torch.ones_like(PG)), self.box_size, self.dim)
        ll = ll - g.flatten(-self.dim).sum(-1)  # Σ ln 1/(1 + δ_i)
        ok = inside & valid & torch.isfinite(ll)
        return torch.where(ok, ll, torch.full_like(ll, -math.inf))
