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

Amplitude grids depend only on (n, box_size, θ) and are kept in a small LRU cache per
simulator (``cache_size`` entries), so fields at a repeated θ cost one randn, a multiply and an irfftn.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from simulators.cosmology.fourier import (
    FourierGrid,
    check_grid,
    fourier_grid,
    gaussian_log_likelihood,
    hermitian_noise,
)
from simulators.cosmology.spectrum import CosmologyParameters, linear_power

__all__ = ["GaussianField", "LognormalField"]


class _CosmoField:
    """Shared machinery: parameters, prior, the P(k) grid, amplitude cache, generation."""

    name = "field"

    def __init__(
        self,
        n: int,
        box_size: float,
        dim: int = 2,
        *,
        params: Sequence[str] = ("Omega_m", "sigma8"),
        fixed: Mapping[str, float] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        z: float = 0.0,
        wiggles: bool = True,
        dtype: torch.dtype = torch.float32,
        cache_size: int = 8,
        slab_depth: float | None = None,
    ):
        check_grid(n, dim, box_size)
        if slab_depth is not None and not slab_depth > 0:
            raise ValueError(f"slab_depth must be a positive length in Mpc/h; got {slab_depth}")
        if z < 0:
            raise ValueError(f"redshift z must be >= 0; got z={z}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype}")
        self.n, self.box_size, self.dim, self.z, self.wiggles = int(n), float(box_size), int(dim), float(z), bool(wiggles)
        self.dtype = dtype
        self.slab_depth = float(slab_depth) if slab_depth is not None else self.box_size
        self.cosmo = CosmologyParameters(params, fixed, bounds)
        self.prior = self.cosmo.prior()
        self.x_shape = (self.n,) * self.dim
        self.cache_size = int(cache_size)
        self._cache: OrderedDict = OrderedDict()

    @property
    def config(self) -> dict:
        return {"n": self.n, "box_size": self.box_size, "dim": self.dim, "z": self.z, "wiggles": self.wiggles,
                "slab_depth": self.slab_depth if self.dim == 2 else None, "dtype": str(self.dtype).replace("torch.", ""), **self.cosmo.config()}

    def grid(self, device=None) -> FourierGrid:
        return fourier_grid(self.n, self.dim, self.box_size, str(torch.device(device or "cpu")))

    def power_grid(self, theta: Tensor) -> Tensor:
        """Input P(k) (Mpc/h)^dim on the rfft grid, ``theta: (*B, D) -> (*B, *rshape)`` float64.

        P is tabulated on the distinct |m|^2 = 0 .. dim (n//2)^2 and gathered, so the EH98 fit is
        evaluated on ~dim n^2/4 wavenumbers, not n^dim. P(0) = 0. In 2D: P_3D / slab_depth.
        """
        grid = self.grid(theta.device)
        c = self.cosmo.unpack(theta)
        m2max = self.dim * (self.n // 2) ** 2
        k = grid.k_fundamental * torch.arange(m2max + 1, dtype=torch.float64, device=theta.device).sqrt()
        table = linear_power(k, c["Omega_m"], c["sigma8"], c["Omega_b"], c["h"], c["n_s"], self.z, wiggles=self.wiggles)
        table[..., 0] = 0.0
        if self.dim == 2:
            table = table / self.slab_depth
        flat = table.reshape(-1, m2max + 1)[:, grid.m2.flatten()]
        return flat.reshape(*theta.shape[:-1], *grid.rshape)

    def _amplitude_uncached(self, theta: Tensor) -> Tensor:  # (U, D) -> (U, *rshape) float64
        raise NotImplementedError

    def _cached_rows(self, theta: Tensor) -> Tensor:
        """Per-θ precomputation ``(*B, ...)`` from the LRU cache (computed for the missing θ, batched)."""
        self.cosmo.check(theta)
        batch = theta.shape[:-1]
        flat = theta.reshape(-1, theta.shape[-1])
        if flat.shape[0] == 1:
            uniq, inv = flat, torch.zeros(1, dtype=torch.long, device=theta.device)
        else:
            uniq, inv = torch.unique(flat, dim=0, return_inverse=True)
        keys = [(tuple(row.tolist()), str(theta.device)) for row in uniq.double().cpu()]
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        local = {}
        if missing:
            with torch.no_grad():  # cached grids never hold an autograd graph
                new = self._amplitude_uncached(uniq[missing].detach()).to(self.dtype)
            local = {keys[i]: new[j] for j, i in enumerate(missing)}
        rows = [local[key] if key in local else self._cache[key] for key in keys]
        for key, row in zip(keys, rows):  # LRU update
            self._cache[key] = row
            self._cache.move_to_end(key)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        out = torch.stack(rows)[inv]
        return out.reshape(*batch, *out.shape[1:])

    def amplitude(self, theta: Tensor) -> Tensor:
        """Per-mode amplitude sqrt(P_Gauss/V) ``(*B, *rshape)`` in ``self.dtype`` (cached per θ)."""
        return self._cached_rows(theta)

    def _gaussian(self, theta: Tensor, generator: torch.Generator | None) -> Tensor:
        amp = self.amplitude(theta)
        grid = self.grid(theta.device)
        z = hermitian_noise(tuple(theta.shape[:-1]), grid, generator=generator, dtype=self.dtype, device=theta.device)
        return torch.fft.irfftn(z * amp, s=grid.shape, dim=grid.fft_dims, norm="forward")


class GaussianField(_CosmoField):
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
        return (self.power_grid(theta) / self.grid(theta.device).volume).sqrt()

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """θ ``(*B, D)`` -> δ ``(*B, *x_shape)`` in ``self.dtype`` on θ's device."""
        return self._gaussian(theta, generator)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """Exact ln p(x | θ), ``theta: (*B, D)``, ``x: (*B, *x_shape)`` (broadcast) -> ``(*B,)`` float64.

        Differentiable in θ. Outside the prior support it is -inf (no error, for samplers).
        """
        if theta.shape[-1] != self.cosmo.dim:
            raise ValueError(f"theta must have shape (*B, {self.cosmo.dim}); got {tuple(theta.shape)}")
        if tuple(x.shape[x.dim() - self.dim:]) != self.x_shape:
            raise ValueError(f"x must have shape (*B, {self.x_shape}); got {tuple(x.shape)}")
        inside = self.cosmo.inside(theta)
        safe = torch.where(inside.unsqueeze(-1), theta, ((self.cosmo.low + self.cosmo.high) / 2).to(theta))
        P = self.power_grid(safe)
        ll = gaussian_log_likelihood(x, P, self.box_size, self.dim)
        return torch.where(inside, ll, torch.full_like(ll, -math.inf))


class LognormalField(_CosmoField):
    """Lognormal (Coles-Jones) field whose power spectrum is the EH98 linear P(k) (module docstring).

    Same arguments as :class:`GaussianField`, plus
        max_negative_depth: tolerated depth -min P_G / max P_G of negative Gaussian power
            (warned about and clipped); deeper raises a ValueError naming the k.

    ``simulate(theta: (*B, D)) -> (*B, n, n[, n])``, δ >= -1, mean 0 in expectation.
    """

    name = "lognormal_field"

    def __init__(self, n: int, box_size: float, dim: int = 2, *, max_negative_depth: float = 1e-3, **kwargs):
        super().__init__(n, box_size, dim, **kwargs)
        self.max_negative_depth = float(max_negative_depth)

    @property
    def config(self) -> dict:
        return {**super().config, "max_negative_depth": self.max_negative_depth}

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
        return torch.expm1(g - 0.5 * var)
