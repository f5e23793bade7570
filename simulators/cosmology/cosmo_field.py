r"""The machinery shared by :class:`~simulators.cosmology.fields.GaussianField` and ``LognormalField``: the
parameters θ and their prior, the input spectrum P(k; θ) on the grid's distinct |k| (from the Ω_m interpolation
table when only Ω_m and σ8 are free, :mod:`simulators.cosmology.power_table`), a small LRU cache of the per-θ
amplitude grids and the Gaussian draw ``irfftn(z * amplitude)``. Conventions: :mod:`simulators.cosmology.fields`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from simulators.cosmology.fourier import FourierGrid, check_grid, fourier_grid, hermitian_noise
from simulators.cosmology.power_table import ModeSet, log_power_table, mode_set
from simulators.cosmology.spectrum import CosmologyParameters, linear_power

__all__ = ["CosmoField"]

_SHAPE_PARAMS = {"Omega_b", "h", "n_s"}  # free parameters that change the shape of P (no Ω_m table then)


class CosmoField:
    """Shared machinery: parameters, prior, the P(k) grid, amplitude cache, generation."""

    name = "field"
    x_kind = "field"

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
        self.n, self.box_size, self.dim, self.z, self.wiggles = (
            int(n),
            float(box_size),
            int(dim),
            float(z),
            bool(wiggles),
        )
        self.dtype = dtype
        self.slab_depth = float(slab_depth) if slab_depth is not None else self.box_size
        self.cosmo = CosmologyParameters(params, fixed, bounds)
        self.prior = self.cosmo.prior()
        self.x_shape = (self.n,) * self.dim
        self.cache_size = int(cache_size)
        self._cache: OrderedDict = OrderedDict()

    @property
    def param_names(self) -> tuple[str, ...]:
        """The names of θ's components, in order."""
        return tuple(self.cosmo.params)

    @property
    def config(self) -> dict:
        return {
            "n": self.n,
            "box_size": self.box_size,
            "dim": self.dim,
            "z": self.z,
            "wiggles": self.wiggles,
            "slab_depth": self.slab_depth if self.dim == 2 else None,
            "dtype": str(self.dtype).replace("torch.", ""),
            **self.cosmo.config(),
        }

    def grid(self, device=None) -> FourierGrid:
        return fourier_grid(self.n, self.dim, self.box_size, str(torch.device(device or "cpu")))

    def modes(self, device=None) -> ModeSet:
        """The distinct |k| of the grid (:mod:`simulators.cosmology.power_table`)."""
        return mode_set(self.n, self.dim, self.box_size, str(torch.device(device or "cpu")))

    def log_power_modes(self, theta: Tensor) -> Tensor:
        """ln P(k) (Mpc/h)^dim at the grid's distinct |k| > 0, ``theta: (*B, D) -> (*B, K - 1)`` float64.

        With only Ω_m and σ8 free (any extra non-cosmological parameters aside), from the Ω_m
        interpolation table (within 1e-7 of the exact EH98 + Simpson σ8 integral), else exact
        (:func:`linear_power` with the 1,024-node Gauss-Legendre σ8 rule). In 2D: P_3D / slab_depth.
        """
        c = self.cosmo.unpack(theta)
        dev = theta.device
        if not set(self.cosmo.params) & _SHAPE_PARAMS:
            om_range = self.cosmo.bounds.get("Omega_m", (self.cosmo.values["Omega_m"],) * 2)
            table = log_power_table(
                self.n,
                self.dim,
                self.box_size,
                str(dev),
                tuple(float(v) for v in om_range),
                *(float(self.cosmo.values[p]) for p in ("Omega_b", "h", "n_s")),
                self.z,
                self.wiggles,
            )
            lnP = table(c["Omega_m"]) + 2 * c["sigma8"].log().unsqueeze(-1)
        else:
            k = self.modes(dev).k
            lnP = linear_power(
                k,
                c["Omega_m"],
                c["sigma8"],
                c["Omega_b"],
                c["h"],
                c["n_s"],
                self.z,
                wiggles=self.wiggles,
                quadrature="gauss",
            ).log()
        if self.dim == 2:
            lnP = lnP - math.log(self.slab_depth)
        return lnP

    def power_grid(self, theta: Tensor) -> Tensor:
        """Input P(k) (Mpc/h)^dim on the rfft grid, ``theta: (*B, D) -> (*B, *rshape)`` float64; P(0) = 0.

        Gathered from :meth:`log_power_modes` (the grid's distinct |k|).
        """
        return self.modes(theta.device).gather(self.log_power_modes(theta).exp())

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
        if uniq.shape[0] > self.cache_size:  # a batch of many θ: compute them all, leave the cache alone
            with torch.no_grad():
                out = self._amplitude_uncached(uniq.detach()).to(self.dtype)[inv]
            return out.reshape(*batch, *out.shape[1:])
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
