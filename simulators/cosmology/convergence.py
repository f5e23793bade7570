r"""A weak-lensing-like convergence map: a projected lognormal matter field plus shape noise.

ConvergenceMap (CosmoGAN-style, single thin lens plane, Born approximation): the matter in a
slab of comoving depth Δχ centred at the lens redshift z_l is projected and modelled as a 2D
lognormal field δ_2D (spectrum P(k, z_l) / Δχ, :class:`LognormalField`); for sources at z_s

    κ(x) = (3/2) Ω_m (H0/c)^2 (1 + z_l) χ_l (χ_s - χ_l) / χ_s · Δχ · δ_2D(x) + n(x),

with χ the comoving distance (flat ΛCDM) and n white shape noise per pixel of standard deviation
σ_e / sqrt(n_gal Ω_pix), Ω_pix the pixel solid angle in arcmin^2 (pixel side (L/n)/χ_l rad).
Since δ_2D >= -1, κ without noise is bounded below by -W, as for lognormal convergence.
The map is linear-theory lognormal (no halofit); it is a weak-lensing-*like* toy with the
right dependence on Ω_m (lensing weight) and σ8 (amplitude), not a ray-traced map.

Likelihood: without shape noise (``n_gal = 0``) κ = W(θ) δ_2D with δ_2D the zero-mean lognormal field,
so on the (n² - 1)-dimensional set {mean κ = 0} ln p(κ | θ) = ln p_LN(κ / W | θ) - (n² - 1) ln W(θ)
(exact; :meth:`LognormalField.log_likelihood`). With shape noise the density is an integral over the
n²-dimensional latent field: there is no ``log_likelihood`` (``hasattr`` is False, so validation falls
back to calibration), and asking for it says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from simulators.cosmology.fields import LognormalField
from simulators.cosmology.spectrum import C_OVER_H0, comoving_distance

__all__ = ["ConvergenceMap"]


class ConvergenceMap:
    """2D weak-lensing-like convergence map: projected lognormal matter + shape noise.

    Args:
        n: pixels per side (>= 2).
        box_size: transverse comoving side of the lens slab in Mpc/h (angle = box_size / χ_l).
        z_lens, z_source: lens-plane and source redshifts, 0 < z_lens < z_source.
        depth: comoving depth Δχ of the projected slab in Mpc/h (default: box_size).
        n_gal: source galaxies per arcmin^2 (0 disables shape noise).
        sigma_e: intrinsic ellipticity dispersion.
        params, fixed, bounds, wiggles, dtype: as for :class:`GaussianField`.

    ``simulate(theta: (*B, D)) -> κ: (*B, n, n)``; θ = (Ω_m, σ8) by default.
    """

    name = "convergence_map"
    x_kind = "field"

    def __init__(
        self,
        n: int = 128,
        box_size: float = 300.0,
        *,
        z_lens: float = 0.5,
        z_source: float = 1.0,
        depth: float | None = None,
        n_gal: float = 30.0,
        sigma_e: float = 0.26,
        params: Sequence[str] = ("Omega_m", "sigma8"),
        fixed: Mapping[str, float] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        wiggles: bool = True,
        dtype: torch.dtype = torch.float32,
    ):
        if not 0 < z_lens < z_source:
            raise ValueError(f"need 0 < z_lens < z_source; got z_lens={z_lens}, z_source={z_source}")
        if n_gal < 0 or sigma_e < 0:
            raise ValueError(f"n_gal and sigma_e must be >= 0; got n_gal={n_gal}, sigma_e={sigma_e}")
        depth = float(box_size if depth is None else depth)
        self.field = LognormalField(
            n,
            box_size,
            2,
            params=params,
            fixed=fixed,
            bounds=bounds,
            z=z_lens,
            wiggles=wiggles,
            dtype=dtype,
            slab_depth=depth,
        )
        self.n, self.box_size, self.depth = int(n), float(box_size), depth
        self.z_lens, self.z_source, self.n_gal, self.sigma_e = (
            float(z_lens),
            float(z_source),
            float(n_gal),
            float(sigma_e),
        )
        self.prior = self.field.prior
        self.x_shape = (self.n, self.n)

    @property
    def param_names(self) -> tuple[str, ...]:
        """The names of θ's components, in order."""
        return tuple(self.field.cosmo.params)

    @property
    def config(self) -> dict:
        c = {
            k: v
            for k, v in self.field.config.items()
            if k not in ("dim", "z", "slab_depth", "max_negative_depth", "zero_mean")
        }
        return {
            **c,
            "z_lens": self.z_lens,
            "z_source": self.z_source,
            "depth": self.depth,
            "n_gal": self.n_gal,
            "sigma_e": self.sigma_e,
        }

    def lensing_weight(self, theta: Tensor) -> Tensor:
        """W(θ) ``(*B,)`` float64 such that κ = W δ_2D (module docstring)."""
        om = self.field.cosmo.unpack(theta)["Omega_m"]
        chi_l = comoving_distance(self.z_lens, om)
        chi_s = comoving_distance(self.z_source, om)
        return 1.5 * om / C_OVER_H0**2 * (1 + self.z_lens) * chi_l * (chi_s - chi_l) / chi_s * self.depth

    def noise_sigma(self, theta: Tensor) -> Tensor:
        """Per-pixel shape-noise standard deviation ``(*B,)`` float64 (0 if n_gal == 0)."""
        om = self.field.cosmo.unpack(theta)["Omega_m"]
        if self.n_gal == 0 or self.sigma_e == 0:
            return torch.zeros_like(om)
        chi_l = comoving_distance(self.z_lens, om)
        pix_arcmin = (self.box_size / self.n) / chi_l * (180 * 60 / math.pi)
        return self.sigma_e / torch.sqrt(self.n_gal * pix_arcmin**2)

    def __getattr__(self, name: str):
        if name == "log_likelihood" and self.__dict__.get("n_gal", 0) > 0 and self.__dict__.get("sigma_e", 0) > 0:
            raise AttributeError(
                f"ConvergenceMap with shape noise (n_gal = {self.n_gal:g}, sigma_e = {self.sigma_e:g}) has no tractable "
                "log_likelihood (a lognormal field plus white noise: an n^2-dimensional integral); use n_gal = 0 for "
                'the exact likelihood, or validate by calibration (reference = "none")'
            )
        if name == "log_likelihood":
            return self._log_likelihood
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """Exact ln p(κ | θ) without shape noise (module docstring): ``theta (*B, D)``, ``x (*B, n, n)``
        (broadcast) -> ``(*B,)`` float64; -inf outside the prior or where κ / W <= -1."""
        if theta.shape[-1] != self.field.cosmo.dim:
            raise ValueError(f"theta must have shape (*B, {self.field.cosmo.dim}); got {tuple(theta.shape)}")
        if tuple(x.shape[-2:]) != self.x_shape:
            raise ValueError(f"x must have shape (*B, {self.n}, {self.n}) (this map's grid); got {tuple(x.shape)}")
        inside = self.field.cosmo.inside(theta)
        safe = torch.where(inside.unsqueeze(-1), theta, ((self.field.cosmo.low + self.field.cosmo.high) / 2).to(theta))
        W = self.lensing_weight(safe)
        ll = self.field.log_likelihood(safe, x.double() / W[..., None, None]) - (self.n**2 - 1) * torch.log(W)
        return torch.where(inside, ll, torch.full_like(ll, -math.inf))

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """θ ``(*B, D)`` -> κ ``(*B, n, n)`` on θ's device."""
        delta = self.field.simulate(theta, generator=generator)
        W = self.lensing_weight(theta).to(delta.dtype)[..., None, None]
        kappa = W * delta
        if self.n_gal > 0 and self.sigma_e > 0:
            s = self.noise_sigma(theta).to(delta.dtype)[..., None, None]
            noise = torch.randn(kappa.shape, generator=generator, dtype=kappa.dtype, device=kappa.device)
            kappa = kappa + s * noise
        return kappa
