"""The particle-mesh N-body simulator (simulators/cosmology/nbody*.py): exact oracles for its pieces, the issue-21
accuracy targets, gradients against finite differences, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from simulators.cosmology.fourier import power_spectrum
from simulators.cosmology.nbody import NBody
from simulators.cosmology.nbody_ic import growth, hubble, lattice, linear_modes, lpt_initial_conditions, omega_m_of_a
from simulators.cosmology.nbody_pm import cic_weights, density_contrast
from simulators.cosmology.spectrum import growth_factor, linear_power

FID = (0.3111, 0.8102)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _theta(om=FID[0], s8=FID[1], dtype=torch.float64):
    return torch.tensor([[om, s8]], dtype=dtype)


def _shell_edges(L: float, m2_max: int) -> torch.Tensor:
    """One bin per |m|^2 = 1 .. m2_max (in units of k_f)."""
    kf = 2 * math.pi / L
    m2 = torch.arange(1, m2_max + 1, dtype=torch.float64)
    return kf * torch.cat([torch.tensor([0.5], dtype=torch.float64), (m2 + 0.5).sqrt()])


def test_growth_matches_spectrum_and_its_derivative():
    om = torch.tensor([0.1, 0.3111, 0.5, 0.9], dtype=torch.float64)
    for z in (0.0, 1.0, 9.0, 49.0):
        a = torch.tensor(1 / (1 + z), dtype=torch.float64)
        D, dD = growth(a, om)
        assert torch.allclose(D, growth_factor(z, om), rtol=1e-12, atol=0)
        h = 1e-6 * float(a)
        fd = (growth(a + h, om)[0] - growth(a - h, om)[0]) / (2 * h)
        assert torch.allclose(dD, fd, rtol=1e-7)
    # the growth equation d(a^3 E dD/da)/da = 1.5 Ω_m D / (a^2 E) that the FastPM kick factor relies on
    a = torch.tensor(0.3, dtype=torch.float64)
    gp = lambda x: x**3 * hubble(x, om) * growth(x, om)[1]  # noqa: E731
    lhs = (gp(a + 1e-6) - gp(a - 1e-6)) / 2e-6
    assert torch.allclose(lhs, 1.5 * om * growth(a, om)[0] / (a**2 * hubble(a, om)), rtol=1e-6)


def test_linear_field_has_the_linear_power_spectrum():
    """The IC field's P(k) equals P_lin within cosmic variance (Var P_b = 2 P^2 / N_b per bin)."""
    sim = NBody(32, 64, 256.0, dtype=torch.float64)
    noise = sim.white_noise((4,), generator=torch.Generator().manual_seed(5))
    th = _theta().expand(4, 2)
    c = sim.check_theta(th)
    ck = linear_modes(noise, c["Omega_m"], c["sigma8"], 256.0, c)
    delta = torch.fft.irfftn(ck, s=(32, 32, 32), norm="forward")
    k, P, nm = power_spectrum(delta, 256.0, bins=8)
    Pl = linear_power(k, *FID, quadrature="gauss")
    Pmean = P.mean(0)
    z = (Pmean / Pl - 1) / torch.sqrt(2 / (4 * nm))
    assert bool((z.abs() < 4.5).all()), z
    pooled = (P * nm).sum() / (4 * (Pl * nm).sum())
    assert abs(float(pooled) - 1) < 0.03


def test_lpt_displacements_of_two_plane_waves_are_exact():
    """δ = A cos(kx) + B cos(ky): Ψ1 = -(A/k) sin(kx) x̂ - (B/k) sin(ky) ŷ, δ2 = AB cos kx cos ky, and Ψ2 the
    gradient solution of δ2; the Zel'dovich momentum is a^3 E dx/da (finite difference in a)."""
    n, L, A, B = 16, 100.0, 0.3, 0.2
    k = 2 * math.pi / L * 2
    q = lattice(n, L)
    x, y = q[:, 0], q[:, 1]
    delta = (A * torch.cos(k * x) + B * torch.cos(k * y)).reshape(n, n, n)
    ck = torch.fft.rfftn(delta, norm="forward").unsqueeze(0)
    om = torch.tensor([0.3], dtype=torch.float64)
    a = 0.05
    d1, p1 = lpt_initial_conditions(ck, om, a, L, order=1)
    d2, p2 = lpt_initial_conditions(ck, om, a, L, order=2)
    D1 = growth(torch.tensor(a, dtype=torch.float64), om)[0]
    psi1 = torch.stack([-A / k * torch.sin(k * x), -B / k * torch.sin(k * y), torch.zeros_like(x)], -1)
    assert torch.allclose(d1[0], D1 * psi1, atol=1e-12)
    s = 0.5 * A * B / (2 * k**2)
    psi2 = -s * (
        torch.stack([k * torch.ones_like(x), k * torch.ones_like(x), 0 * x], -1)
        * torch.sin(k * x + k * y).unsqueeze(-1)
        + torch.stack([k * torch.ones_like(x), -k * torch.ones_like(x), 0 * x], -1)
        * torch.sin(k * x - k * y).unsqueeze(-1)
    )
    D2 = 3 / 7 * D1**2 * omega_m_of_a(torch.tensor(a, dtype=torch.float64), om) ** (-1 / 143)
    assert torch.allclose(d2[0] - d1[0], D2 * psi2, atol=1e-12)
    assert float((d2 - d1).abs().max()) > 1e-4  # the 2LPT term is there
    h = 1e-6
    fd = (lpt_initial_conditions(ck, om, a + h, L, 1)[0] - lpt_initial_conditions(ck, om, a - h, L, 1)[0]) / (2 * h)
    aa = torch.tensor(a, dtype=torch.float64)
    assert torch.allclose(p1, aa**3 * hubble(aa, om) * fd, rtol=1e-6, atol=1e-12)


def test_kick_drift_kick_is_exact_for_the_linear_force():
    """With the linear force F = 1.5 Ω_m (x - q) (Zel'dovich flow) the FastPM factors give x - q = D Ψ exactly,
    whatever the number of steps."""
    for steps in (2, 7):
        sim = NBody(8, 16, 64.0, steps, 20.0, lpt_order=1, dtype=torch.float64)
        th = _theta()
        pos, mom = sim.initial_conditions(th, sim.white_noise((1,), generator=torch.Generator().manual_seed(2)))
        q = lattice(8, 64.0, sim.lattice_offset)

        def minimal(x, q=q):
            return torch.remainder(x - q + 32.0, 64.0) - 32.0

        final = sim.evolve(pos, mom, th[:, 0], force=minimal)
        D0 = growth(torch.tensor(sim.a_init, dtype=torch.float64), th[:, 0])[0]
        assert torch.allclose(minimal(final), minimal(pos) / D0, rtol=1e-10, atol=1e-10)


def test_linear_growth_on_large_scales():
    """Issue 21: for the same realisation, P_final / P_initial = D(0)^2 / D(z_init)^2 within 2% below k_Nyq / 10
    (32^3 particles, 64^3 mesh, 10 steps, 8 realisations; L = 1024 Mpc/h puts the shells |m|^2 = 1, 2 there).
    At σ8 = 0.01 the run is linear and the per-shell growth is within 1.25% (the deviation at σ8 = 0.81 in
    smaller boxes is the mode coupling of a single realisation, not the integrator): docs/simulators_nbody.md."""
    for L, s8, tol, seeds in ((1024.0, FID[1], 0.02, 8), (256.0, 0.01, 0.0125, 2)):
        sim = NBody(32, 64, L, 10, 20.0, output="positions")
        th = _theta(s8=s8, dtype=torch.float32).expand(seeds, 2)
        noise = sim.white_noise((seeds,), generator=torch.Generator().manual_seed(0))
        pos0, mom0 = sim.initial_conditions(th, noise)
        pos1 = sim.evolve(pos0, mom0, th[:, 0])
        edges = _shell_edges(L, 2)
        k, Pi, _ = power_spectrum(sim.density(pos0), L, edges)
        _, Pf, _ = power_spectrum(sim.density(pos1), L, edges)
        assert float(k.max()) < math.pi * 32 / L / 10
        ratio = Pf / Pi * growth_factor(20.0, FID[0]) ** 2
        assert bool(((ratio - 1).abs() < tol).all()), (L, s8, ratio)


def test_ten_steps_converge_to_a_hundred():
    """Issue 21: P(k) of a 10-step run within 2% of a 100-step run of the same realisation up to k_Nyq / 4."""
    L, th = 256.0, _theta(dtype=torch.float32)
    P = {}
    for steps in (10, 100):
        k, P[steps], _ = power_spectrum(NBody(32, 64, L, steps, 20.0, output="density").simulate(th, seed=3), L)
    sel = k <= math.pi * 32 / L / 4
    assert int(sel.sum()) >= 3
    assert float((P[10] / P[100] - 1)[0, sel].abs().max()) < 0.02


def test_gradient_through_the_whole_run_matches_finite_differences():
    sim = NBody(8, 16, 64.0, 3, 20.0, output="density", dtype=torch.float64)
    noise = sim.white_noise((1,), generator=torch.Generator().manual_seed(3))
    th = torch.tensor([[0.3, 0.8]], dtype=torch.float64, requires_grad=True)
    f = lambda t: (sim.simulate(t, noise=noise) ** 2).sum()  # noqa: E731
    (g,) = torch.autograd.grad(f(th), th)
    for i in range(2):
        e = torch.zeros(1, 2, dtype=torch.float64)
        e[0, i] = 1e-5
        fd = (f(th.detach() + e) - f(th.detach() - e)) / 2e-5
        assert abs(float(fd / g[0, i]) - 1) < 1e-6


def test_batch_seed_and_generator():
    sim = NBody(8, 16, 64.0, 3, output="density")
    th = torch.tensor([[0.25, 0.7], [0.35, 0.9]])
    both = sim.simulate(th, seed=7)
    for i in range(2):
        assert torch.allclose(both[i], sim.simulate(th[i : i + 1], seed=7)[0], rtol=1e-4, atol=1e-4)
    other = sim.simulate(th[:1], seed=8)
    corr = torch.corrcoef(torch.cat([both, other]).reshape(3, -1))
    assert float(corr[0, 1]) > 0.8 and float(corr[0, 2].abs()) < 0.3  # the same realisation at two θ, not at two seeds
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    assert torch.equal(sim.simulate(th, generator=g(1)), sim.simulate(th, generator=g(1)))
    x = sim.simulate(th[[0, 0]], generator=g(1))
    assert not torch.allclose(x[0], x[1])  # one realisation per θ with a generator
    assert sim.simulate(th.reshape(1, 2, 2), seed=1).shape == (1, 2, 16, 16, 16)


def test_outputs():
    th = _theta(dtype=torch.float32)
    dens = NBody(8, 16, 64.0, 3, output="density").simulate(th, seed=1)
    proj = NBody(8, 16, 64.0, 3, output="projection").simulate(th, seed=1)
    pos = NBody(8, 16, 64.0, 3, output="positions").simulate(th, seed=1)
    assert dens.shape == (1, 16, 16, 16) and proj.shape == (1, 16, 16) and pos.shape == (1, 512, 3)
    assert torch.allclose(proj, dens.mean(-1))
    assert abs(float(dens.mean())) < 1e-5  # mass conserved on the mesh
    assert float(pos.min()) >= 0 and float(pos.max()) < 64.0


def test_particles_leaving_the_box_are_wrapped_not_lost():
    """σ8 = 3 in a 32 Mpc/h box with Zel'dovich ICs at z = 10: displacements of several cells, many particles
    cross the boundary; every one of the 512 comes back inside [0, L) and the mesh holds all the mass."""
    L = 32.0
    sim = NBody(8, 16, L, 4, 10.0, lpt_order=1, output="positions", bounds={"sigma8": (0.1, 5.0)})
    th = _theta(s8=3.0, dtype=torch.float32)
    noise = sim.white_noise((1,), generator=torch.Generator().manual_seed(4))
    c = sim.check_theta(th)
    ck = linear_modes(noise, c["Omega_m"], c["sigma8"], L, c)
    disp, _ = lpt_initial_conditions(ck, c["Omega_m"], 1.0, L, 1)  # the linear displacement at z = 0
    raw = lattice(8, L, sim.lattice_offset) + disp
    assert int(((raw < 0) | (raw >= L)).any(-1).sum()) > 10
    pos = sim.simulate(th, noise=noise)
    assert pos.shape == (1, 512, 3) and bool(torch.isfinite(pos).all())
    assert float(pos.min()) >= 0 and float(pos.max()) < L
    index, weight = cic_weights(pos, 16, L)
    assert abs(float(density_contrast(index, weight, 16, 512).sum())) < 1e-2  # Σ δ = 0: all 512 particles counted


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_steps": 1}, "n_steps >= 2"),
        ({"n_particles": 16, "n_mesh": 8}, "n_mesh >= n_particles"),
        ({"z_init": 4.0}, "z_init >= 5"),
        ({"z_init": 8.0, "lpt_order": 1}, "z_init >= 10"),
        ({"lpt_order": 3}, "lpt_order"),
        ({"output": "halos"}, "output must be one of"),
        ({"box_size": -1.0}, "box_size"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NBody(**{"n_particles": 8, **kwargs})


@pytest.mark.parametrize(
    "theta, match",
    [
        ([[0.0, 0.8]], "0 < Omega_m <= 1"),
        ([[-0.2, 0.8]], "0 < Omega_m <= 1"),
        ([[1.2, 0.8]], "0 < Omega_m <= 1"),
        ([[0.3, 0.0]], "sigma8 > 0"),
        ([[0.3, -1.0]], "sigma8 > 0"),
        ([[0.3, float("nan")]], "NaN"),
        ([[0.3, 0.8, 0.1]], r"shape \(\*B, 2\)"),
    ],
)
def test_bad_theta(theta, match):
    with pytest.raises(ValueError, match=match):
        NBody(8, 16, 64.0, 2).simulate(torch.tensor(theta))


def test_bad_noise_and_registry():
    sim = NBody(8, 16, 64.0, 2)
    with pytest.raises(ValueError, match="noise must have shape"):
        sim.simulate(_theta(dtype=torch.float32), noise=torch.zeros(1, 8, 8, 8, dtype=torch.complex128))
    from physgen.config.simulators import resolve_simulator

    s = resolve_simulator("nbody", {"n_particles": 8, "box_size": 64.0, "n_steps": 2, "output": "density"})
    assert isinstance(s, NBody) and s.x_shape == (16, 16, 16) and s.config["n_mesh"] == 16
