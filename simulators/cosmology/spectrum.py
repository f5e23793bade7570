r"""Linear matter power spectrum: Eisenstein & Hu (1998) transfer function, growth, σ8.

Units: k in h/Mpc, P(k) in (Mpc/h)^3, lengths in Mpc/h. Flat ΛCDM (Ω_Λ = 1 - Ω_m,
radiation neglected in the expansion history).

    P(k, z) = A k^{n_s} T(k)^2 D(z)^2,     D(0) = 1,

with A fixed so that σ(R = 8 Mpc/h, z = 0) = σ8, where

    σ^2(R) = 1/(2π^2) ∫ dk k^2 P(k) W^2(kR),   W(x) = 3 (sin x - x cos x) / x^3

(real-space top hat). The integral is done in ln k in float64, by one of two rules:

* ``quadrature="simpson"`` (default, the reference): composite Simpson on [1e-5, 1e3] h/Mpc
  with 16385 nodes; it agrees with an independent piecewise Simpson in k to < 1e-4 and with a
  1024-panel Gauss-Legendre rule on [1e-7, 1e4] to ~1e-12 (tests/test_cosmology.py).
* ``quadrature="gauss"``: 64 panels of 16-point Gauss-Legendre on [1e-4, 50] h/Mpc (1024 nodes,
  16x cheaper); within 1e-8 relative of the Simpson rule over the prior box (tested). The
  interpolation tables of :mod:`simulators.cosmology.power_table` are built with it.

Transfer functions (k_Mpc = k h):

* ``wiggles=True``: the full baryon + CDM fit of Eisenstein & Hu 1998 (ApJ 496, 605,
  Section 3, eqs. 2-24), transcribed from the authors' reference code ``tf_fit.c``
  (``TFset_parameters`` / ``TFfit_onek``): sound horizon at the drag epoch from eq. 6,
  Silk scale eq. 7, α_c, β_c, α_b, β_b, β_node as published.
* ``wiggles=False``: the "no-wiggle" shape fit (EH98 eqs. 29-31, ``TFnowiggles``), with the
  approximate sound horizon of eq. 26.

T_CMB = 2.7255 K by default (the reference code's default is 2.728 K; pass ``T_cmb``).

Linear growth (flat ΛCDM, Heath 1977):

    D(a) ∝ (5 Ω_m / 2) E(a) ∫_0^a da' / (a' E(a'))^3,   E(a) = sqrt(Ω_m a^-3 + 1 - Ω_m),

normalised to D(a = 1) = 1, integrated with 64-point Gauss-Legendre in float64.

Everything is pure torch (float64 inside), batched over cosmologies and differentiable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from physgen.priors import BoxUniform

__all__ = [
    "eh98_transfer",
    "growth_factor",
    "sigma_r",
    "comoving_distance",
    "linear_power",
    "CosmologyParameters",
    "DEFAULT_COSMOLOGY",
    "DEFAULT_PRIOR_BOUNDS",
]

#: Fiducial values of every cosmological parameter (Planck 2018-like). Those not in θ are fixed to these.
DEFAULT_COSMOLOGY: dict[str, float] = {
    "Omega_m": 0.3111,
    "sigma8": 0.8102,
    "Omega_b": 0.049,
    "h": 0.6766,
    "n_s": 0.9665,
}
#: Default uniform prior bounds of each parameter when it is free.
DEFAULT_PRIOR_BOUNDS: dict[str, tuple[float, float]] = {
    "Omega_m": (0.1, 0.5),
    "sigma8": (0.6, 1.0),
    "Omega_b": (0.03, 0.07),
    "h": (0.55, 0.85),
    "n_s": (0.87, 1.07),
}
_R8 = 8.0  # Mpc/h
_LNK_MIN, _LNK_MAX, _N_SIGMA = math.log(1e-5), math.log(1e3), 16385  # odd: Simpson
_GL_LNK_MIN, _GL_LNK_MAX, _GL_PANELS, _GL_POINTS = math.log(1e-4), math.log(50.0), 64, 16


def _t(x, like: Tensor | None = None) -> Tensor:
    dev = like.device if like is not None else None
    return torch.as_tensor(x, dtype=torch.float64, device=dev)


def eh98_transfer(k: Tensor, omega_m, omega_b, h, *, wiggles: bool = True, T_cmb: float = 2.7255) -> Tensor:
    """Eisenstein & Hu (1998) matter transfer function T(k), normalised to T(k -> 0) = 1.

    Args:
        k: wavenumbers in h/Mpc, ``(..., K)`` (or anything broadcastable with the parameters
            after they get a trailing axis).
        omega_m, omega_b, h: floats or tensors ``(*B,)``: total matter and baryon density
            parameters, and H0 / (100 km/s/Mpc).
        wiggles: the full fit with baryon acoustic oscillations (True) or the no-wiggle fit.
        T_cmb: CMB temperature in K.

    Returns:
        ``(*B, K)`` float64 (broadcast of ``(*B, 1)`` with ``k``).
    """
    k = _t(k)
    om, ob, hh = (_t(v, k).unsqueeze(-1) for v in (omega_m, omega_b, h))
    k_mpc = k * hh
    omhh, obhh = om * hh**2, ob * hh**2
    fb = ob / om
    theta = T_cmb / 2.7
    k_eq = 0.0746 * omhh / theta**2  # Mpc^-1, eq. 3
    q = k_mpc / 13.41 / k_eq
    if not wiggles:  # eqs. 26, 28-31
        s = 44.5 * torch.log(9.83 / omhh) / torch.sqrt(1 + 10.0 * obhh**0.75)
        a_gam = 1 - 0.328 * torch.log(431.0 * omhh) * fb + 0.38 * torch.log(22.3 * omhh) * fb**2
        gam_eff = omhh * (a_gam + (1 - a_gam) / (1 + (0.43 * k_mpc * s) ** 4))
        q_eff = q * omhh / gam_eff
        L0 = torch.log(2 * 2.718282 + 1.8 * q_eff)  # constant as in tf_fit.c
        C0 = 14.2 + 731.0 / (1 + 62.5 * q_eff)
        return L0 / (L0 + C0 * q_eff**2)

    z_eq = 2.50e4 * omhh / theta**4  # really 1 + z_eq
    b1 = 0.313 * omhh**-0.419 * (1 + 0.607 * omhh**0.674)
    b2 = 0.238 * omhh**0.223
    z_d = 1291 * omhh**0.251 / (1 + 0.659 * omhh**0.828) * (1 + b1 * obhh**b2)
    R_d = 31.5 * obhh / theta**4 * (1000 / (1 + z_d))
    R_eq = 31.5 * obhh / theta**4 * (1000 / z_eq)
    s = (
        2.0
        / 3.0
        / k_eq
        * torch.sqrt(6.0 / R_eq)
        * torch.log((torch.sqrt(1 + R_d) + torch.sqrt(R_d + R_eq)) / (1 + torch.sqrt(R_eq)))
    )
    k_silk = 1.6 * obhh**0.52 * omhh**0.73 * (1 + (10.4 * omhh) ** -0.95)
    a1 = (46.9 * omhh) ** 0.670 * (1 + (32.1 * omhh) ** -0.532)
    a2 = (12.0 * omhh) ** 0.424 * (1 + (45.0 * omhh) ** -0.582)
    alpha_c = a1 ** (-fb) * a2 ** (-(fb**3))
    bb1 = 0.944 / (1 + (458 * omhh) ** -0.708)
    bb2 = (0.395 * omhh) ** -0.0266
    beta_c = 1.0 / (1 + bb1 * ((1 - fb) ** bb2 - 1))
    y = z_eq / (1 + z_d)
    sq = torch.sqrt(1 + y)
    G = y * (-6.0 * sq + (2.0 + 3.0 * y) * torch.log((sq + 1) / (sq - 1)))
    alpha_b = 2.07 * k_eq * s * (1 + R_d) ** -0.75 * G
    beta_node = 8.41 * omhh**0.435
    beta_b = 0.5 + fb + (3.0 - 2.0 * fb) * torch.sqrt((17.2 * omhh) ** 2 + 1)

    # k = 0 is the limit T = 1; keep the formulas finite there and patch it afterwards.
    kk = torch.where(k_mpc > 0, k_mpc, torch.ones_like(k_mpc))
    q = kk / 13.41 / k_eq
    xx = kk * s
    e = 2.718282  # as in tf_fit.c
    ln_beta = torch.log(e + 1.8 * beta_c * q)
    ln_nobeta = torch.log(e + 1.8 * q)
    C_alpha = 14.2 / alpha_c + 386.0 / (1 + 69.9 * q**1.08)
    C_noalpha = 14.2 + 386.0 / (1 + 69.9 * q**1.08)
    f = 1.0 / (1.0 + (xx / 5.4) ** 4)
    T_c = f * ln_beta / (ln_beta + C_noalpha * q**2) + (1 - f) * ln_beta / (ln_beta + C_alpha * q**2)
    s_tilde = s * (1.0 + (beta_node / xx) ** 3) ** (-1.0 / 3.0)
    xt = kk * s_tilde
    T_b0 = ln_nobeta / (ln_nobeta + C_noalpha * q**2)
    T_b = (
        torch.sin(xt)
        / xt
        * (T_b0 / (1 + (xx / 5.2) ** 2) + alpha_b / (1 + (beta_b / xx) ** 3) * torch.exp(-((kk / k_silk) ** 1.4)))
    )
    T = fb * T_b + (1 - fb) * T_c
    return torch.where(k_mpc > 0, T, torch.ones_like(T))


@lru_cache(maxsize=4)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def growth_factor(z, omega_m) -> Tensor:
    """Linear growth factor D(z) of flat ΛCDM, normalised to D(0) = 1.

    Args:
        z: redshift, float or tensor broadcastable with ``omega_m``.
        omega_m: matter density parameter, float or tensor ``(*B,)``.

    Returns:
        float64 tensor of the broadcast shape.
    """
    om = _t(omega_m)
    a = 1.0 / (1.0 + _t(z, om))
    x, w = (_t(v, om) for v in _gauss_legendre(64))

    def unnormalised(a_: Tensor) -> Tensor:
        a_ = a_.unsqueeze(-1)
        ap = 0.5 * a_ * (x + 1)  # nodes on [0, a]
        E = torch.sqrt(om.unsqueeze(-1) * ap**-3 + 1 - om.unsqueeze(-1))
        integral = 0.5 * a_.squeeze(-1) * ((w / (ap * E) ** 3).sum(-1))
        Ea = torch.sqrt(om * a_.squeeze(-1) ** -3 + 1 - om)
        return 2.5 * om * Ea * integral

    a, om = torch.broadcast_tensors(a, om)
    return unnormalised(a) / unnormalised(torch.ones_like(a))


C_OVER_H0 = 2997.92458  # Mpc/h


def comoving_distance(z, omega_m) -> Tensor:
    """Comoving distance χ(z) = (c/H0) ∫_0^z dz' / E(z') in Mpc/h (flat ΛCDM), float64.

    Args:
        z, omega_m: floats or broadcastable tensors.
    """
    om = _t(omega_m)
    z = _t(z, om)
    z, om = torch.broadcast_tensors(z, om)
    x, w = (_t(v, om) for v in _gauss_legendre(64))
    zp = 0.5 * z.unsqueeze(-1) * (x + 1)
    E = torch.sqrt(om.unsqueeze(-1) * (1 + zp) ** 3 + 1 - om.unsqueeze(-1))
    return C_OVER_H0 * 0.5 * z * (w / E).sum(-1)


def _tophat(x: Tensor) -> Tensor:
    small = x < 1e-3
    xs = torch.where(small, torch.ones_like(x), x)
    w = 3.0 * (torch.sin(xs) - xs * torch.cos(xs)) / xs**3
    return torch.where(small, 1.0 - x**2 / 10.0, w)


@lru_cache(maxsize=8)
def _simpson_lnk(device: str) -> tuple[Tensor, Tensor]:
    lnk = torch.linspace(_LNK_MIN, _LNK_MAX, _N_SIGMA, dtype=torch.float64, device=device)
    h = (_LNK_MAX - _LNK_MIN) / (_N_SIGMA - 1)
    w = torch.ones(_N_SIGMA, dtype=torch.float64, device=device)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return lnk.exp(), w * h / 3.0


@lru_cache(maxsize=8)
def _gauss_lnk(device: str) -> tuple[Tensor, Tensor]:
    x, w = _gauss_legendre(_GL_POINTS)
    edges = np.linspace(_GL_LNK_MIN, _GL_LNK_MAX, _GL_PANELS + 1)
    half = 0.5 * (edges[1:] - edges[:-1])[:, None]
    lnk = (half * (x[None, :] + 1) + edges[:-1, None]).reshape(-1)
    wts = (half * w[None, :]).reshape(-1)
    return _t(np.exp(lnk)).to(device), _t(wts).to(device)


def sigma_r(power, R: float, *, device=None, quadrature: str = "simpson") -> Tensor:
    """RMS of the linear field in a top hat of radius R (Mpc/h).

    Args:
        power: callable ``k: (K,) -> P: (*B, K)`` in (Mpc/h)^3.
        R: top-hat radius in Mpc/h.
        quadrature: "simpson" (16385 nodes, the reference) or "gauss" (1024 nodes, within 1e-8
            relative; module docstring).

    Returns:
        σ(R), ``(*B,)`` float64.
    """
    if quadrature not in ("simpson", "gauss"):
        raise ValueError(f"quadrature must be 'simpson' or 'gauss'; got {quadrature!r}")
    k, w = (_simpson_lnk if quadrature == "simpson" else _gauss_lnk)(str(device or "cpu"))
    P = power(k)
    integrand = k**3 * P * _tophat(k * R) ** 2 / (2 * math.pi**2)
    return torch.sqrt((integrand * w).sum(-1))


def linear_power(
    k: Tensor,
    omega_m,
    sigma8,
    omega_b=DEFAULT_COSMOLOGY["Omega_b"],
    h=DEFAULT_COSMOLOGY["h"],
    n_s=DEFAULT_COSMOLOGY["n_s"],
    z=0.0,
    *,
    wiggles: bool = True,
    T_cmb: float = 2.7255,
    quadrature: str = "simpson",
) -> Tensor:
    """Linear matter power spectrum P(k, z) in (Mpc/h)^3, σ8-normalised at z = 0.

    Args:
        k: ``(K,)`` wavenumbers in h/Mpc (k = 0 gives P = 0 for n_s > 0).
        omega_m, sigma8, omega_b, h, n_s: floats or tensors ``(*B,)``.
        z: redshift (float or ``(*B,)``).
        wiggles: EH98 with BAO (True) or the no-wiggle fit.
        T_cmb: CMB temperature in K.
        quadrature: the rule of the σ8 integral, "simpson" (reference) or "gauss" (:func:`sigma_r`).

    Returns:
        ``(*B, K)`` float64.
    """
    k = _t(k)
    om, s8, ob, hh, ns = (_t(v, k) for v in (omega_m, sigma8, omega_b, h, n_s))
    om, s8, ob, hh, ns = torch.broadcast_tensors(om, s8, ob, hh, ns)

    def shape(kk: Tensor) -> Tensor:
        T = eh98_transfer(kk, om, ob, hh, wiggles=wiggles, T_cmb=T_cmb)
        return kk ** ns.unsqueeze(-1) * T**2

    amp = (s8 / sigma_r(shape, _R8, device=k.device, quadrature=quadrature)) ** 2
    D = growth_factor(_t(z, k), om)
    return (amp * D**2).unsqueeze(-1) * shape(k)


class CosmologyParameters:
    """Which cosmological parameters are in θ (and in which order), and the fixed rest.

    Args:
        params: names in θ order, a subset of ``DEFAULT_COSMOLOGY`` keys (plus ``extra``).
        fixed: values of the parameters not in θ (defaults: ``DEFAULT_COSMOLOGY``).
        bounds: prior bounds of free parameters (defaults: ``DEFAULT_PRIOR_BOUNDS``).
        extra: additional (non-cosmological) parameters ``{name: (default, low, high)}``.
    """

    def __init__(
        self,
        params: Sequence[str] = ("Omega_m", "sigma8"),
        fixed: Mapping[str, float] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        extra: Mapping[str, tuple[float, float, float]] | None = None,
    ):
        values = dict(DEFAULT_COSMOLOGY)
        all_bounds = dict(DEFAULT_PRIOR_BOUNDS)
        for name, (v, lo, hi) in (extra or {}).items():
            values[name], all_bounds[name] = v, (lo, hi)
        params = tuple(params)
        if not params:
            raise ValueError("params must name at least one free parameter, e.g. ('Omega_m', 'sigma8')")
        for name in list(params) + list(fixed or {}) + list(bounds or {}):
            if name not in values:
                raise ValueError(f"unknown parameter {name!r}; allowed: {sorted(values)}")
        if len(set(params)) != len(params):
            raise ValueError(f"params has duplicates: {params}")
        values.update(fixed or {})
        all_bounds.update(bounds or {})
        self.params = params
        self.values = values
        self.bounds = {p: tuple(map(float, all_bounds[p])) for p in params}
        self.low = torch.tensor([self.bounds[p][0] for p in params])
        self.high = torch.tensor([self.bounds[p][1] for p in params])

    @property
    def dim(self) -> int:
        return len(self.params)

    def prior(self) -> BoxUniform:
        return BoxUniform(self.low, self.high)

    def config(self) -> dict:
        return {
            "params": list(self.params),
            "fixed": {k: v for k, v in self.values.items() if k not in self.params},
            "bounds": {k: list(v) for k, v in self.bounds.items()},
        }

    def inside(self, theta: Tensor) -> Tensor:
        """``(*B,)`` bool: θ inside the (closed) prior box."""
        lo, hi = self.low.to(theta), self.high.to(theta)
        return ((theta >= lo) & (theta <= hi)).all(-1)

    def check(self, theta: Tensor) -> None:
        """Raise a ValueError naming the first parameter outside its prior bounds."""
        if theta.shape[-1] != self.dim:
            raise ValueError(
                f"theta must have shape (*B, {self.dim}) for params {self.params}; got {tuple(theta.shape)}"
            )
        if not bool(torch.isfinite(theta).all()):
            raise ValueError("theta contains NaN or inf")
        lo_t, hi_t = self.low.to(theta), self.high.to(theta)  # the prior's own (float32) bounds
        for i, p in enumerate(self.params):
            lo, hi = self.bounds[p]
            col = theta[..., i]
            bad = (col < lo_t[i]) | (col > hi_t[i])
            if bool(bad.any()):
                v = float(col[bad].flatten()[0])
                raise ValueError(
                    f"{p} = {v:g} is outside the prior support [{lo:g}, {hi:g}]; "
                    f"pass theta inside the prior, or widen it with bounds={{'{p}': (low, high)}}"
                )

    def unpack(self, theta: Tensor) -> dict[str, Tensor]:
        """θ ``(*B, D)`` -> dict name -> float64 tensor ``(*B,)`` for every parameter."""
        out = {}
        for name, v in self.values.items():
            if name in self.params:
                out[name] = theta[..., self.params.index(name)].to(torch.float64)
            else:
                out[name] = torch.full(theta.shape[:-1], float(v), dtype=torch.float64, device=theta.device)
        return out
