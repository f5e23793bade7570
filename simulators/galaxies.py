r"""Galaxy point processes in periodic boxes (their estimator of the pair correlation:
:mod:`simulators.pair_correlation`).

Point sets use the physgen convention (:mod:`physgen.shapes`): one tensor ``(*B, N_max, d + 1)``,
coordinates in the first d columns (in [0, L), Mpc/h or the box's unit), the mask in the last
(1 = real point, 0 = padding; padded rows are all 0). Real points come first, in random
order. ``N_max`` is fixed per simulator; a sample with more points raises a ValueError that
names the N_max that would do (never a silent truncation). ``x_kind = "points"`` (the encoders that
take point sets check it). ``as_observation(catalogue)`` turns an observed catalogue, ``(N, d)``
coordinates or a padded ``(N', d + 1)`` set, into one x of shape ``(n_max, d + 1)``: padding and
mask are added, a catalogue with more points than ``n_max`` or of another dimension raises an error
that names the shape (and the n_max) that would do.

ThomasProcess (Neyman-Scott): parents ~ Poisson(κ) per unit volume (uniform on the torus, not
returned); each has Poisson(μ) offspring at parent + N(0, σ^2 I_d), wrapped periodically.
Intensity λ = κ μ; pair correlation (infinite space, periodic images negligible for σ ≪ L)

    g(r) = 1 + exp(-r^2 / 4σ^2) / (κ (4π σ^2)^{d/2}).

Counts: N ~ compound Poisson, E N = κ μ V, Var N = κ V (μ + μ^2).

CoxProcess: a lognormal galaxy overdensity δ_g on an n^d grid (:class:`LognormalField`
with spectrum b^2 P_lin(k; θ), so ⟨δ_g δ_g⟩ = b^2 ξ exactly at k ≠ 0), counts per cell
N_c ~ Poisson(n̄ ΔV (1 + δ_g)), points uniform inside their cell. On the same grid the count
overdensity N_c / (n̄ ΔV) - 1 has E[P̂(k)] = b^2 P(k) + 1/n̄ exactly for k ≠ 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from physgen.shapes import join_points, split_points
from physgen.priors import BoxUniform
from simulators.cosmology.fields import LognormalField
from simulators.cosmology.fourier import check_grid
from simulators.cosmology.spectrum import CosmologyParameters
from simulators.pair_correlation import pair_correlation, shell_volumes  # re-exported (public API)

__all__ = ["ThomasProcess", "CoxProcess", "pair_correlation", "shell_volumes", "as_observation"]


def _check_box(theta: Tensor, names: Sequence[str], low: Tensor, high: Tensor) -> None:
    if theta.shape[-1] != len(names):
        raise ValueError(f"theta must have shape (*B, {len(names)}) for {tuple(names)}; got {tuple(theta.shape)}")
    if not bool(torch.isfinite(theta).all()):
        raise ValueError("theta contains NaN or inf")
    for i, name in enumerate(names):
        col = theta[..., i]
        bad = (col < float(low[i])) | (col > float(high[i]))
        if bool(bad.any()):
            raise ValueError(
                f"{name} = {float(col[bad].flatten()[0]):g} is outside the prior support "
                f"[{float(low[i]):g}, {float(high[i]):g}]; pass theta inside the prior or widen its bounds"
            )


def _pack(pos: Tensor, sample: Tensor, n_samples: int, n_max: int, dim: int, generator, what: str) -> Tensor:
    """Scatter points ``(T, d)`` belonging to ``sample`` ``(T,)`` into ``(n_samples, n_max, d+1)``."""
    counts = torch.bincount(sample, minlength=n_samples)
    need = int(counts.max()) if counts.numel() else 0
    if need > n_max:
        raise ValueError(
            f"{what}: a sample has {need} points > n_max={n_max}; the padded point set cannot hold it. "
            f"Use n_max >= {need} (e.g. n_max={int(math.ceil(need * 1.2))} for headroom)"
        )
    # random order within each sample: sort by sample index + a uniform key in [0, 1)
    key = sample.double() + torch.rand(sample.shape, generator=generator, dtype=torch.float64, device=sample.device)
    order = torch.argsort(key)
    pos, sample = pos[order], sample[order]
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(sample.numel(), device=sample.device) - start[sample]
    pts = torch.zeros(n_samples, n_max, dim, dtype=pos.dtype, device=pos.device)
    mask = torch.zeros(n_samples, n_max, dtype=torch.bool, device=pos.device)
    pts[sample, slot] = pos
    mask[sample, slot] = True
    return join_points(pts, mask)


def as_observation(catalogue: Tensor, *, n_max: int, dim: int, box_size: float, what: str) -> Tensor:
    """One observed catalogue -> a padded point set ``(n_max, dim + 1)`` (mask last, real points first).

    Args:
        catalogue: coordinates ``(N, dim)`` in [0, box_size), or a padded set ``(N', dim + 1)`` (mask last).

    Raises:
        ValueError: a catalogue of another dimension (naming the expected shapes), coordinates outside the
            box, or more than ``n_max`` points (naming the ``n_max`` that would hold it).
    """
    c = torch.as_tensor(catalogue)
    if c.dim() != 2 or c.shape[-1] not in (dim, dim + 1):
        raise ValueError(
            f"{what} takes one catalogue of {dim}-dimensional points: coordinates (N, {dim}) or a padded "
            f"set (N, {dim + 1}) with the mask last, as simulated: ({n_max}, {dim + 1}); "
            f"got shape {tuple(c.shape)}"
        )
    if c.shape[-1] == dim + 1:
        pts, mask = split_points(c.to(torch.float64))
        pts = pts[mask]
    else:
        pts = c.to(torch.float64)
    if not bool(torch.isfinite(pts).all()) or bool(((pts < 0) | (pts >= box_size)).any()):
        raise ValueError(
            f"{what}: coordinates must be finite and in [0, box_size = {box_size:g}); wrap them "
            "periodically (x mod L) first"
        )
    n = pts.shape[0]
    if n > n_max:
        raise ValueError(
            f"{what}: the catalogue has {n} points > n_max = {n_max}, the largest set this simulator (and "
            f"a posterior trained on its simulations) holds; simulate with n_max >= {n} and train again, "
            "or cut the catalogue to a smaller volume"
        )
    out = torch.zeros(n_max, dim + 1, dtype=torch.float32)
    out[:n, :dim] = pts.to(torch.float32)
    out[:n, dim] = 1.0
    return out


def _wrap(pos: Tensor, L: float) -> Tensor:
    pos = torch.remainder(pos, L)
    return torch.where(pos >= L, pos - L, pos)  # rounding can give exactly L


class ThomasProcess:
    """Thomas (Neyman-Scott) cluster process in a periodic box, θ = (κ, μ, σ).

    Args:
        box_size: side L of the periodic box (any length unit; κ is per unit^d, σ in the unit).
        dim: 2 or 3.
        bounds: prior box ``{"kappa": (lo, hi), "mu": (lo, hi), "sigma": (lo, hi)}``; defaults
            κ V in [20, 100] parents per box, μ in [2, 10], σ in [0.01, 0.05] L.
        n_max: padded size; default ceil(E N + 6 sd N) at the prior's upper corner.
        dtype: coordinate dtype.

    ``simulate(theta: (*B, 3)) -> (*B, n_max, dim + 1)`` (mask last). θ outside the prior raises.
    """

    name = "thomas_process"
    param_names = ("kappa", "mu", "sigma")
    x_kind = "points"

    def __init__(
        self,
        box_size: float = 1.0,
        dim: int = 2,
        *,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        n_max: int | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        if not (math.isfinite(box_size) and box_size > 0):
            raise ValueError(f"box_size must be positive; got box_size={box_size}")
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3; got dim={dim}")
        self.box_size, self.dim, self.dtype = float(box_size), int(dim), dtype
        V = self.volume
        b = {"kappa": (20.0 / V, 100.0 / V), "mu": (2.0, 10.0), "sigma": (0.01 * box_size, 0.05 * box_size)}
        for k, v in (bounds or {}).items():
            if k not in b:
                raise ValueError(f"unknown prior bound {k!r}; allowed: {list(b)}")
            b[k] = (float(v[0]), float(v[1]))
        if b["kappa"][0] <= 0 or b["mu"][0] <= 0 or b["sigma"][0] <= 0:
            raise ValueError(f"kappa, mu and sigma must have positive lower bounds; got {b}")
        if b["sigma"][1] > box_size / 8:
            raise ValueError(
                f"sigma's upper bound {b['sigma'][1]:g} exceeds box_size/8 = {box_size / 8:g}: periodic "
                "images would bias g(r); use a larger box or smaller sigma"
            )
        self.bounds = b
        self.prior = BoxUniform([b[k][0] for k in self.param_names], [b[k][1] for k in self.param_names])
        kmax, mmax = b["kappa"][1], b["mu"][1]
        default = int(math.ceil(kmax * V * mmax + 6 * math.sqrt(kmax * V * (mmax + mmax**2))))
        self.n_max = default if n_max is None else int(n_max)
        if self.n_max < 1:
            raise ValueError(f"n_max must be >= 1; got {n_max}")
        self.x_shape = (self.n_max, self.dim + 1)

    @property
    def volume(self) -> float:
        return self.box_size**self.dim

    @property
    def config(self) -> dict:
        return {
            "box_size": self.box_size,
            "dim": self.dim,
            "n_max": self.n_max,
            "bounds": {k: list(v) for k, v in self.bounds.items()},
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    def as_observation(self, catalogue: Tensor) -> Tensor:
        """An observed catalogue ``(N, dim)`` or ``(N', dim + 1)`` -> x ``(n_max, dim + 1)`` (:func:`as_observation`)."""
        return as_observation(catalogue, n_max=self.n_max, dim=self.dim, box_size=self.box_size, what="ThomasProcess")

    def mean_intensity(self, theta: Tensor) -> Tensor:
        """λ = κ μ, the expected points per unit volume: ``theta (*B, 3)`` -> ``(*B,)``. The pair-count
        estimator of g(r) with this λ (``intensity=`` of :func:`physgen.diagnostics.emulator_points.pair_correlation`)
        is unbiased; with the set's own N it is low by the integral constraint."""
        return theta[..., 0] * theta[..., 1]

    def pair_correlation(self, theta: Tensor, r: Tensor) -> Tensor:
        """Analytic g(r): ``theta (*B, 3)``, ``r (R,)`` -> ``(*B, R)``."""
        kappa, sigma = theta[..., 0:1], theta[..., 2:3]
        return 1 + torch.exp(-(r**2) / (4 * sigma**2)) / (kappa * (4 * math.pi * sigma**2) ** (self.dim / 2))

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """θ ``(*B, 3)`` -> points ``(*B, n_max, dim + 1)`` on θ's device."""
        _check_box(theta, self.param_names, self.prior.low, self.prior.high)
        batch, dev, L, d = theta.shape[:-1], theta.device, self.box_size, self.dim
        th = theta.reshape(-1, 3).double()
        B = th.shape[0]
        n_par = torch.poisson(th[:, 0] * self.volume, generator=generator).long()
        par_sample = torch.repeat_interleave(torch.arange(B, device=dev), n_par)
        par_pos = torch.rand(par_sample.numel(), d, generator=generator, dtype=torch.float64, device=dev) * L
        n_off = torch.poisson(th[par_sample, 1], generator=generator).long()
        parent = torch.repeat_interleave(torch.arange(par_sample.numel(), device=dev), n_off)
        sample = par_sample[parent]
        offset = torch.randn(parent.numel(), d, generator=generator, dtype=torch.float64, device=dev)
        pos = _wrap((par_pos[parent] + th[sample, 2:3] * offset).to(self.dtype), L)
        out = _pack(pos, sample, B, self.n_max, d, generator, "ThomasProcess")
        return out.reshape(*batch, self.n_max, d + 1)


class CoxProcess:
    """Poisson galaxies sampling a lognormal density n̄ (1 + δ_g), δ_g with spectrum b^2 P_lin(k; θ).

    Args:
        n: cells per side of the intensity grid (>= 2).
        box_size: side L in Mpc/h.
        dim: 2 or 3 (in 2D, n̄ is per (Mpc/h)^2 and P is the slab-projected spectrum, see fields.py).
        n_bar: mean number density (h/Mpc)^dim.
        bias: linear bias b when it is not in θ (add ``"b"`` to ``params`` to infer it; prior U(1, 3)).
        params: free parameters in θ order (default ``("Omega_m", "sigma8")``); may include ``"b"`` and
            ``"n_bar"`` (the mean density, prior U(n_bar / 2, 2 n_bar) unless ``bounds`` says). b and σ8
            enter only as b σ8 (the spectrum is b^2 P_lin): infer one of them.
        n_max: padded size; default ceil(1.5 n̄ V + 10 sqrt(n̄ V) + 10) at the largest n̄.
        **field_kwargs: passed to :class:`LognormalField` (fixed, bounds, z, wiggles, dtype, ...).

    ``simulate(theta: (*B, D)) -> (*B, n_max, dim + 1)`` (mask last).
    """

    name = "cox_process"
    x_kind = "points"

    def __init__(
        self,
        n: int,
        box_size: float,
        dim: int = 3,
        *,
        n_bar: float = 1e-3,
        bias: float = 1.5,
        params: Sequence[str] = ("Omega_m", "sigma8"),
        n_max: int | None = None,
        **field_kwargs,
    ):
        check_grid(n, dim, box_size)
        if not n_bar > 0:
            raise ValueError(f"n_bar must be a positive density; got n_bar={n_bar}")
        bias_bounds = (field_kwargs.get("bounds") or {}).get("b", (1.0, 3.0))
        nbar_bounds = (field_kwargs.get("bounds") or {}).get("n_bar", (n_bar / 2, 2 * n_bar))
        if not 0 < float(nbar_bounds[0]) <= float(nbar_bounds[1]):
            raise ValueError(f"n_bar bounds must be positive and increasing; got {nbar_bounds}")
        self.field = _BiasedLognormal(
            n,
            box_size,
            dim,
            params=params,
            extra={"b": (float(bias), *map(float, bias_bounds)), "n_bar": (float(n_bar), *map(float, nbar_bounds))},
            **field_kwargs,
        )
        self.n, self.box_size, self.dim, self.n_bar, self.bias = (
            int(n),
            float(box_size),
            int(dim),
            float(n_bar),
            float(bias),
        )
        self.prior = self.field.prior
        top = float(nbar_bounds[1]) if "n_bar" in self.field.cosmo.params else n_bar
        mean = top * box_size**dim
        self.n_max = int(math.ceil(1.5 * mean + 10 * math.sqrt(mean) + 10)) if n_max is None else int(n_max)
        if self.n_max < 1:
            raise ValueError(f"n_max must be >= 1; got {n_max}")
        self.x_shape = (self.n_max, self.dim + 1)

    @property
    def config(self) -> dict:
        return {**self.field.config, "n_bar": self.n_bar, "bias": self.bias, "n_max": self.n_max}

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.field.cosmo.params)

    def as_observation(self, catalogue: Tensor) -> Tensor:
        """An observed catalogue ``(N, dim)`` or ``(N', dim + 1)`` -> x ``(n_max, dim + 1)`` (:func:`as_observation`)."""
        return as_observation(catalogue, n_max=self.n_max, dim=self.dim, box_size=self.box_size, what="CoxProcess")

    def intensity(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Expected counts per cell n̄ ΔV (1 + δ_g) ``(*B, n, ..., n)`` (one lognormal draw)."""
        delta = self.field.simulate(theta, generator=generator)
        n_bar = self.field.cosmo.unpack(theta)["n_bar"].to(delta).reshape(*theta.shape[:-1], *([1] * self.dim))
        return n_bar * (self.box_size / self.n) ** self.dim * (1 + delta)

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """θ ``(*B, D)`` -> points ``(*B, n_max, dim + 1)`` on θ's device."""
        lam = self.intensity(theta, generator=generator)
        batch, d, n = theta.shape[:-1], self.dim, self.n
        lam = lam.reshape(-1, n**d).double()
        B = lam.shape[0]
        counts = torch.poisson(lam, generator=generator).long()
        per = counts.sum(-1)
        if B and int(per.max()) > self.n_max:
            need = int(per.max())
            raise ValueError(
                f"CoxProcess: a sample has {need} galaxies > n_max={self.n_max}; "
                f"use n_max >= {need} (e.g. n_max={int(math.ceil(need * 1.2))})"
            )
        cell = torch.repeat_interleave(torch.arange(B * n**d, device=lam.device), counts.flatten())
        sample, local = cell // n**d, cell % n**d
        idx = torch.stack([(local // n ** (d - 1 - a)) % n for a in range(d)], dim=-1).double()
        u = torch.rand(cell.numel(), d, generator=generator, dtype=torch.float64, device=lam.device)
        pos = _wrap(((idx + u) * (self.box_size / n)).to(self.field.dtype), self.box_size)
        out = _pack(pos, sample, B, self.n_max, d, generator, "CoxProcess")
        return out.reshape(*batch, self.n_max, d + 1)


class _BiasedLognormal(LognormalField):
    """LognormalField whose target spectrum is b^2 P_lin, b from θ or fixed."""

    def __init__(self, n, box_size, dim, *, params, extra, **kwargs):
        rest = {k: v for k, v in kwargs.items() if k not in ("bounds", "fixed")}
        fixed_cosmo = {k: v for k, v in (kwargs.get("fixed") or {}).items() if k not in extra}
        super().__init__(n, box_size, dim, params=("Omega_m",), fixed=fixed_cosmo, **rest)
        bounds = {k: v for k, v in (kwargs.get("bounds") or {}).items() if k not in extra}
        self.cosmo = CosmologyParameters(params, kwargs.get("fixed"), bounds, extra=extra)
        self.prior = self.cosmo.prior()

    def power_grid(self, theta: Tensor) -> Tensor:
        b = self.cosmo.unpack(theta)["b"]
        return super().power_grid(theta) * (b**2).reshape(*b.shape, *([1] * self.dim))
