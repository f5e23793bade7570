r"""A differentiable particle-mesh (PM) N-body simulator in torch, batched over θ = (Ω_m, σ8).

Pipeline (units Mpc/h, time in 1/H0, flat ΛCDM; fixed Ω_b, h, n_s as the other cosmology simulators):

1. Linear field on the N_p^3 particle lattice from the EH98 spectrum (:func:`simulators.cosmology.spectrum.linear_power`),
   2LPT (or Zel'dovich) displacements and momenta at a_init = 1 / (1 + z_init) (:mod:`nbody_ic`). The lattice
   q = i L / N_p + h / 2 is offset by half a mesh cell h = L / n_mesh: particles sitting on mesh nodes make the CIC
   density a kinked (|u|-like) function of small displacements, which couples modes at O(k h) (measured: 10-25%
   per-mode growth errors at k = 2-3 k_f even at σ8 = 1e-4); at cell centres the CIC weights are linear in the
   displacement (and with n_mesh = 2 N_p the unperturbed lattice paints an exactly uniform density).
2. ``n_steps`` kick-drift-kick steps uniform in the scale factor a from a_init to 1. Each step needs one PM force
   (:mod:`nbody_pm`: CIC paint on the n_mesh^3 mesh, exact 1/k^2, 4-point FD gradient, CIC read-out). The
   FastPM factors (Feng et al. 2016, arXiv:1603.00476) make linear growth exact for any step:

       drift a0 -> a1 with p at a_c:   Δx = p [D(a1) - D(a0)] / G_p(a_c),           G_p = a^3 E dD/da,
       kick  a0 -> a1 with F at a_c:   Δp = F [G_p(a1) - G_p(a0)] / (1.5 Ω_m D(a_c)),

   since linear theory has x = q + D Ψ, p = G_p Ψ and F = 1.5 Ω_m D Ψ. A step from a_i to a_{i+1} kicks to the
   midpoint a_h = (a_i + a_{i+1}) / 2 with F(a_i), drifts to a_{i+1} with p(a_h), then kicks to a_{i+1} with
   F(a_{i+1}) (reused by the next step): n_steps + 1 force evaluations per run. Positions are wrapped into
   [0, L) after every drift (periodic box: no particle is ever lost).
3. Output (``output``): ``"density"`` δ on the mesh at z = 0 ``(*B, n, n, n)``, ``"projection"`` its mean along
   the last axis ``(*B, n, n)``, or ``"positions"`` ``(*B, N_p^3, 3)`` in [0, L).

Everything is torch (index_add / gather, torch.fft), so autograd runs through the whole simulation (gradients
with respect to θ and to the initial noise; tested against finite differences in float64).

Realisations: ``simulate(theta, generator=g)`` draws one white noise per θ; ``seed=s`` draws one noise from
``torch.Generator().manual_seed(s)`` shared by every θ of the batch (the same realisation at every θ, the same as
any other call with that seed); ``noise=z`` uses the given noise (:func:`nbody_ic.white_noise`).

Limits (each a ValueError that names it): n_steps >= 2; n_mesh >= n_particles (a coarser mesh cannot resolve the
particle lattice); z_init >= 5 for 2LPT and >= 10 for Zel'dovich. The rms linear density contrast σ_δ on the default
lattice (32^3 in 256 Mpc/h, Ω_m = 0.31, σ8 = 0.81) is 0.27 at z = 5 and 0.15 at z = 10; the first neglected LPT
order is O(σ_δ^2) ≈ 7% for 2LPT at z = 5 and O(σ_δ) ≈ 15% for Zel'dovich at z = 10, and the transients it seeds
decay as (D_init/D)^2 (2LPT) and D_init/D (Zel'dovich) (Crocce, Pueblas & Scoccimarro 2006): ≈ 0.3% (2LPT from
z = 5, D = 0.21) and ≈ 2% (Zel'dovich from z = 10, D = 0.12) at z = 0; a later start makes both larger, as σ_δ grows with D.
θ must be physical: 0 < Ω_m <= 1 and σ8 > 0 (the prior box is exposed as ``prior``, not enforced).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from simulators.cosmology.nbody_ic import growth, hubble, lattice, linear_modes, lpt_initial_conditions, white_noise
from simulators.cosmology.nbody_pm import cic_weights, density_contrast, pm_force
from simulators.cosmology.spectrum import CosmologyParameters

__all__ = ["NBody", "MIN_Z_INIT"]

OUTPUTS = ("density", "projection", "positions")
#: lowest z_init per LPT order (module docstring)
MIN_Z_INIT = {1: 10.0, 2: 5.0}
_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    torch.float32: torch.float32,
    torch.float64: torch.float64,
}


class NBody:
    """Particle-mesh N-body simulation of the matter density at z = 0 (module docstring).

    Args:
        n_particles: particles per side N_p (N_p^3 particles on a lattice), >= 2.
        n_mesh: PM mesh cells per side, >= n_particles (default 2 n_particles).
        box_size: side L in Mpc/h.
        n_steps: kick-drift-kick steps uniform in a from a_init to 1, >= 2.
        z_init: initial redshift (>= 5 for 2LPT, >= 10 for Zel'dovich).
        lpt_order: 2 (2LPT) or 1 (Zel'dovich).
        output: "density", "projection" or "positions".
        params, fixed, bounds: the free parameters (default Ω_m, σ8), fixed values and prior box
            (:class:`simulators.cosmology.spectrum.CosmologyParameters`).
        dtype: float32 (default) or float64 particles and mesh (growth factors are always float64).

    ``simulate(theta: (*B, D)) -> (*B, *x_shape)``.
    """

    name = "nbody"

    def __init__(
        self,
        n_particles: int = 32,
        n_mesh: int | None = None,
        box_size: float = 256.0,
        n_steps: int = 10,
        z_init: float = 20.0,
        lpt_order: int = 2,
        output: str = "projection",
        *,
        params: Sequence[str] = ("Omega_m", "sigma8"),
        fixed: Mapping[str, float] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        dtype: torch.dtype | str = torch.float32,
    ):
        n_mesh = 2 * n_particles if n_mesh is None else n_mesh
        if int(n_particles) != n_particles or n_particles < 2:
            raise ValueError(f"n_particles (per side) must be an integer >= 2; got {n_particles}")
        if int(n_mesh) != n_mesh or n_mesh < n_particles:
            raise ValueError(
                f"n_mesh={n_mesh} is smaller than the particle grid n_particles={n_particles}: the mesh must resolve "
                "the particle lattice (n_mesh >= n_particles); use n_mesh = 2 * n_particles (the default)"
            )
        if int(n_steps) != n_steps or n_steps < 2:
            raise ValueError(
                f"n_steps={n_steps}: the kick-drift-kick integrator needs n_steps >= 2 (e.g. 10; the FastPM factors "
                "keep large scales exact with few steps, small scales converge with more)"
            )
        if lpt_order not in (1, 2):
            raise ValueError(f"lpt_order must be 1 (Zel'dovich) or 2 (2LPT); got {lpt_order}")
        if not (z_init >= MIN_Z_INIT[lpt_order] and z_init < 1e4):
            name = "2LPT" if lpt_order == 2 else "Zel'dovich"
            raise ValueError(
                f"z_init={z_init} is outside the range of {name} initial conditions, {MIN_Z_INIT[lpt_order]:g} <= "
                f"z_init < 1e4 (below z_init >= {MIN_Z_INIT[lpt_order]:g} the truncated LPT orders are too large); "
                "use e.g. z_init=20" + ("" if lpt_order == 2 else ", or use lpt_order=2, which allows z_init >= 5")
            )
        if not (box_size > 0 and box_size < float("inf")):
            raise ValueError(f"box_size must be a positive length in Mpc/h; got {box_size}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}; got {output!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be float32 or float64; got {dtype}")
        self.n_particles, self.n_mesh, self.n_steps = int(n_particles), int(n_mesh), int(n_steps)
        self.box_size, self.z_init, self.lpt_order, self.output = float(box_size), float(z_init), lpt_order, output
        self.dtype = _DTYPES[dtype]
        self.cosmo = CosmologyParameters(params, fixed, bounds)
        self.prior = self.cosmo.prior()
        self.x_kind = "points" if output == "positions" else "field"
        n = self.n_mesh
        self.x_shape = {"density": (n, n, n), "projection": (n, n), "positions": (self.n_particles**3, 3)}[output]

    @property
    def a_init(self) -> float:
        return 1.0 / (1.0 + self.z_init)

    @property
    def lattice_offset(self) -> float:
        """Offset (Mpc/h, every axis) of the particle lattice: half a mesh cell (module docstring)."""
        return 0.5 * self.box_size / self.n_mesh

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.cosmo.params)

    @property
    def config(self) -> dict:
        return {
            "n_particles": self.n_particles,
            "n_mesh": self.n_mesh,
            "box_size": self.box_size,
            "n_steps": self.n_steps,
            "z_init": self.z_init,
            "lpt_order": self.lpt_order,
            "output": self.output,
            "dtype": str(self.dtype).replace("torch.", ""),
            **self.cosmo.config(),
        }

    # ---------------------------------------------------------------- pieces
    def check_theta(self, theta: Tensor) -> dict[str, Tensor]:
        """Raise a ValueError for θ of the wrong shape, non-finite or unphysical; return the unpacked parameters."""
        if not torch.is_tensor(theta) or theta.dim() < 1 or theta.shape[-1] != self.cosmo.dim:
            got = tuple(theta.shape) if torch.is_tensor(theta) else type(theta).__name__
            raise ValueError(f"theta must have shape (*B, {self.cosmo.dim}) for params {self.cosmo.params}; got {got}")
        if not bool(torch.isfinite(theta).all()):
            raise ValueError("theta contains NaN or inf")
        c = self.cosmo.unpack(theta.reshape(-1, self.cosmo.dim))
        limits = {
            "Omega_m": (0.0, 1.0, "0 < Omega_m <= 1 (flat ΛCDM, Omega_Lambda = 1 - Omega_m >= 0)"),
            "sigma8": (0.0, float("inf"), "sigma8 > 0"),
            "h": (0.0, float("inf"), "h > 0"),
            "Omega_b": (0.0, 1.0, "0 < Omega_b < Omega_m"),
        }
        for p, (lo, hi, text) in limits.items():
            v = c[p]
            bad = (v <= lo) | (v > hi)
            if p == "Omega_b":
                bad = bad | (v >= c["Omega_m"])
            if bool(bad.any()):
                raise ValueError(
                    f"{p} = {float(v[bad][0]):g} is outside the physical range {text}; pass theta inside it, "
                    f"e.g. within the prior box {self.cosmo.bounds.get(p, '')}"
                )
        return c

    def white_noise(self, batch: tuple[int, ...] = (), *, generator: torch.Generator | None = None, device=None):
        """Unit Hermitian noise ``(*batch, N_p, N_p, N_p//2+1)`` complex128 that fixes a realisation."""
        return white_noise(batch, self.n_particles, self.box_size, generator=generator, device=device)

    def initial_conditions(self, theta: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """Positions in [0, L) and momenta at a_init, each ``(B, N_p^3, 3)`` in ``self.dtype``.

        ``theta: (B, D)``; ``noise: (B or 1, N_p, N_p, N_p//2+1)`` (one noise is shared by every θ).
        """
        c = self.check_theta(theta)
        ck = linear_modes(noise, c["Omega_m"], c["sigma8"], self.box_size, c)
        disp, mom = lpt_initial_conditions(ck, c["Omega_m"], self.a_init, self.box_size, self.lpt_order)
        q = lattice(self.n_particles, self.box_size, self.lattice_offset, device=theta.device)
        return self._wrap((q + disp).to(self.dtype)), mom.to(self.dtype)

    def _wrap(self, x: Tensor) -> Tensor:
        x = torch.remainder(x, self.box_size)
        return torch.where(x >= self.box_size, x - self.box_size, x)  # float rounding of remainder(-tiny, L)

    def _factors(self, omega_m: Tensor, device) -> tuple[Tensor, Tensor]:
        """FastPM kick and drift factors, ``(B, 2 n_steps)`` and ``(B, n_steps)`` float64 (module docstring)."""
        n = self.n_steps
        a = torch.linspace(self.a_init, 1.0, n + 1, dtype=torch.float64, device=device)
        ah = 0.5 * (a[1:] + a[:-1])
        om = omega_m.to(torch.float64).unsqueeze(-1)
        D, dD = growth(a, om)
        Dh, dDh = growth(ah, om)
        Gp = a**3 * hubble(a, om) * dD
        Gph = ah**3 * hubble(ah, om) * dDh
        # kick a_i -> a_h with F(a_i), then a_h -> a_{i+1} with F(a_{i+1}); Δp = F_unit ΔG_p / D(a_c)
        k1 = (Gph - Gp[:, :-1]) / D[:, :-1]
        k2 = (Gp[:, 1:] - Gph) / D[:, 1:]
        kick = torch.stack([k1, k2], -1).reshape(om.shape[0], 2 * n)
        drift = (D[:, 1:] - D[:, :-1]) / Gph
        return kick, drift

    def evolve(
        self, pos: Tensor, mom: Tensor, omega_m: Tensor, force: Callable[[Tensor], Tensor] | None = None
    ) -> Tensor:
        """Kick-drift-kick from a_init to a = 1: positions ``(B, N, 3)`` at z = 0 in [0, L).

        Args:
            pos, mom: ``(B, N, 3)`` at a_init (:meth:`initial_conditions`).
            omega_m: ``(B,)``.
            force: positions ``(B, N, 3)`` -> force per unit 1.5 Ω_m ``(B, N, 3)``; default the PM force
                (:func:`nbody_pm.pm_force`). The tests pass the exact linear force to check the integrator.
        """
        kick, drift = self._factors(omega_m, pos.device)
        kick, drift = kick.to(pos.dtype), drift.to(pos.dtype)
        if force is None:
            force = lambda x: pm_force(x, self.n_mesh, self.box_size)  # noqa: E731
        F = force(pos)
        for i in range(self.n_steps):
            mom = mom + F * kick[:, 2 * i].view(-1, 1, 1)
            pos = self._wrap(pos + mom * drift[:, i].view(-1, 1, 1))
            F = force(pos)
            mom = mom + F * kick[:, 2 * i + 1].view(-1, 1, 1)
        return pos

    def density(self, pos: Tensor) -> Tensor:
        """δ on the n_mesh^3 mesh (CIC) of positions ``(B, N, 3)`` -> ``(B, n, n, n)``."""
        index, weight = cic_weights(pos, self.n_mesh, self.box_size)
        return density_contrast(index, weight, self.n_mesh, pos.shape[1])

    def observe(self, pos: Tensor) -> Tensor:
        """The configured output of final positions ``(B, N, 3)``."""
        if self.output == "positions":
            return pos
        delta = self.density(pos)
        return delta if self.output == "density" else delta.mean(-1)

    # ---------------------------------------------------------------- simulator protocol
    def simulate(
        self,
        theta: Tensor,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """θ ``(*B, D)`` -> x ``(*B, *x_shape)`` in ``self.dtype`` (module docstring: realisations)."""
        self.check_theta(theta)
        batch = tuple(theta.shape[:-1])
        flat = theta.reshape(-1, self.cosmo.dim)
        rshape = (self.n_particles,) * 2 + (self.n_particles // 2 + 1,)
        if noise is None:
            if seed is not None:
                noise = self.white_noise(
                    (1,), generator=torch.Generator(device=theta.device).manual_seed(int(seed)), device=theta.device
                )
            else:
                noise = self.white_noise((flat.shape[0],), generator=generator, device=theta.device)
        elif tuple(noise.shape[-3:]) != rshape:
            raise ValueError(
                f"noise must have shape (*B or 1, {', '.join(map(str, rshape))}); got {tuple(noise.shape)}"
            )
        else:
            noise = noise.reshape(-1, *rshape)
            if noise.shape[0] not in (1, flat.shape[0]):
                raise ValueError(
                    f"noise has {noise.shape[0]} realisations for {flat.shape[0]} θ; pass 1 or {flat.shape[0]}"
                )
        pos, mom = self.initial_conditions(flat, noise)
        x = self.observe(self.evolve(pos, mom, self.cosmo.unpack(flat)["Omega_m"]))
        return x.reshape(*batch, *self.x_shape)
