r"""Fourier conventions for periodic fields, the P(k) estimator and the exact Gaussian likelihood.

Box: ``dim`` axes of ``n`` cells and side L (Mpc/h); N_c = n^dim cells, V = L^dim,
ΔV = V / N_c. Grid wavevectors k = (2π/L) m, m_i in the ``torch.fft.fftfreq(n) * n`` integers;
k_f = 2π/L (fundamental), k_N = π n / L (Nyquist).

Fourier convention (unnormalised forward DFT, ``torch.fft.rfftn(norm="backward")``):

    δ_k = Σ_x δ(x) e^{-i k·x},      δ(x) = (1/N_c) Σ_k δ_k e^{i k·x}.

A field with power spectrum P has ⟨|δ_k|^2⟩ = N_c^2 P(k) / V, so the estimator is

    P̂(k) = V |δ_k|^2 / N_c^2,

and its grid correlation function is ξ(x) = (1/V) Σ_k P(k) e^{i k·x}.

Generation: c_k = δ_k / N_c = sqrt(P(k)/V) z_k with z_k complex normal, E|z|^2 = 1, drawn in
the rfft half-space and made exactly Hermitian on the self-conjugate planes (last index 0,
and n/2 for even n): z <- (z + conj(z[-m])) / √2, which leaves pairs (m, -m) complex with
E|z|^2 = 1 and makes self-conjugate modes (2m ≡ 0 mod n) real with variance 1. Then
δ(x) = irfftn(c, norm="forward") is real exactly. The k = 0 mode is set to 0 (zero box mean).

Binned estimator and its exact variance. A bin b holds N_b *grid* modes (full grid, k = 0
excluded; in the rfft half-space interior modes count twice, the two self-conjugate planes
once). P̂_b = (1/N_b) Σ_{k in b} P̂(k). For a Gaussian field, a non-self-conjugate mode has
P̂(k) = P(k) E with E ~ Exp(1) (variance P^2) and appears twice (k and -k, identical values);
a self-conjugate mode has P̂(k) = P(k) χ²_1 (variance 2 P^2) and appears once. Hence

    Var(P̂_b) = (1/N_b^2) [Σ_pairs 4 P^2 + Σ_self 2 P^2] = 2 Σ_{k in b} P(k)^2 / N_b^2,

summed over grid modes: exactly 2 P^2 / N_b for constant P, with N_b = ``n_modes``.

Exact Gaussian log-likelihood. The covariance of δ(x) is circulant with eigenvalues
λ_k = N_c P(k) / V; with P(0) = 0 the field lives on the zero-mean hyperplane, and the
density w.r.t. Lebesgue measure there is (N_c - 1 dimensions)

    ln p(δ | θ) = -1/2 Σ_{k≠0} [ |δ_k|^2 / (N_c λ_k) + ln(2π λ_k) ],

a sum over all grid modes, i.e. over independent real degrees of freedom (each pair (k, -k)
gives two, real and imaginary part, each self-conjugate mode one). The box mean of the data
(k = 0) is ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

__all__ = [
    "FourierGrid",
    "fourier_grid",
    "check_grid",
    "hermitian_noise",
    "bin_modes",
    "default_edges",
    "power_spectrum",
    "gaussian_log_likelihood",
]


@dataclass(frozen=True)
class FourierGrid:
    """Wavevector bookkeeping of an n^dim periodic box in the rfft half-space layout.

    Attributes:
        n, dim, box_size: grid size, dimension, side length (Mpc/h).
        shape: real-space shape ``(n,) * dim``; rshape: rfft shape ``(n,)*(dim-1) + (n//2+1,)``.
        m2: ``rshape`` long tensor of |m|^2 (k^2 = k_f^2 m2).
        weight: ``rshape`` float64, grid modes each rfft cell stands for (2 interior, 1 on the
            self-conjugate planes).
        kmag: ``rshape`` float64 |k| in h/Mpc.
    """

    n: int
    dim: int
    box_size: float
    shape: tuple[int, ...]
    rshape: tuple[int, ...]
    m2: Tensor
    weight: Tensor
    kmag: Tensor

    @property
    def k_fundamental(self) -> float:
        return 2 * math.pi / self.box_size

    @property
    def k_nyquist(self) -> float:
        return math.pi * self.n / self.box_size

    @property
    def n_cells(self) -> int:
        return self.n**self.dim

    @property
    def volume(self) -> float:
        return self.box_size**self.dim

    @property
    def fft_dims(self) -> tuple[int, ...]:
        return tuple(range(-self.dim, 0))


def check_grid(n: int, dim: int, box_size: float) -> None:
    """Raise a ValueError naming the limit for an impossible grid."""
    if int(n) != n or n < 2:
        raise ValueError(f"grid size n must be an integer >= 2; got n={n}")
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3; got dim={dim}")
    if not (math.isfinite(box_size) and box_size > 0):
        raise ValueError(f"box_size must be a positive length in Mpc/h; got box_size={box_size}")


@lru_cache(maxsize=32)
def fourier_grid(n: int, dim: int, box_size: float, device: str = "cpu") -> FourierGrid:
    """The (cached) :class:`FourierGrid` for an n^dim box of side ``box_size`` on ``device``."""
    check_grid(n, dim, box_size)
    dev = torch.device(device)
    full = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=dev).round().long()
    half = torch.arange(n // 2 + 1, device=dev)
    axes = [full] * (dim - 1) + [half]
    mesh = torch.meshgrid(*axes, indexing="ij")
    m2 = torch.stack([m**2 for m in mesh]).sum(0)
    w = torch.full(m2.shape, 2.0, dtype=torch.float64, device=dev)
    w[..., 0] = 1.0
    if n % 2 == 0:
        w[..., n // 2] = 1.0
    kmag = (2 * math.pi / box_size) * m2.double().sqrt()
    return FourierGrid(n, dim, float(box_size), (n,) * dim, tuple(m2.shape), m2, w, kmag)


def _reflect(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """x[..., (-m) mod n, ...] along ``dims``."""
    if not dims:
        return x
    return torch.roll(torch.flip(x, dims), shifts=(1,) * len(dims), dims=dims)


def hermitian_noise(
    batch_shape: tuple[int, ...],
    grid: FourierGrid,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> Tensor:
    """Complex normal modes z ``(*batch, *rshape)`` with E|z|^2 = 1 and exact Hermitian symmetry.

    Self-conjugate modes are real with variance 1; k = 0 is included (caller zeroes it).
    """
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    z = torch.randn((*batch_shape, *grid.rshape), dtype=cdtype, generator=generator, device=device)
    plane_dims = tuple(range(-(grid.dim - 1), 0))  # the full (non-halved) axes of a plane
    planes = [0] + ([grid.n // 2] if grid.n % 2 == 0 else [])
    for j in planes:
        p = z[..., j]
        z[..., j] = (p + _reflect(p, plane_dims).conj()) / math.sqrt(2.0)
    return z


_BIN_CACHE: dict = {}


def _bin_index(grid: FourierGrid, edges: Tensor, device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bin index per rfft cell (nb = outside / k = 0), weights, modes and Σ w|k| per bin (cached)."""
    key = (grid.n, grid.dim, grid.box_size, str(device), tuple(edges.double().tolist()))
    hit = _BIN_CACHE.get(key)
    if hit is not None:
        return hit
    edges = edges.to(device=device, dtype=torch.float64)
    nb = edges.numel() - 1
    kmag = grid.kmag.to(device).flatten()
    w = grid.weight.to(device).flatten()
    idx = torch.bucketize(kmag, edges, right=True) - 1
    idx = torch.where((idx < 0) | (idx >= nb) | (kmag == 0), torch.full_like(idx, nb), idx)
    n_modes = torch.zeros(nb + 1, dtype=torch.float64, device=device).index_add_(0, idx, w)
    ksum = torch.zeros(nb + 1, dtype=torch.float64, device=device).index_add_(0, idx, w * kmag)
    if len(_BIN_CACHE) >= 64:
        _BIN_CACHE.clear()
    _BIN_CACHE[key] = (idx, w, n_modes, ksum)
    return idx, w, n_modes, ksum


def bin_modes(values: Tensor, grid: FourierGrid, edges: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Average rfft-layout values ``(*B, *rshape)`` over the grid modes of each |k| bin.

    Bin b holds ``edges[b] <= |k| < edges[b+1]``; k = 0 is excluded. Each rfft cell counts
    with its weight (2 interior, 1 self-conjugate planes), i.e. the average is over the full grid.

    Returns:
        (k_mean ``(nb,)``, mean ``(*B, nb)``, n_modes ``(nb,)``), float64; empty bins give NaN.
    """
    idx, w, n_modes, ksum = _bin_index(grid, edges, values.device)
    nb = edges.numel() - 1
    batch = values.shape[: values.dim() - grid.dim]
    flat = values.reshape(-1, idx.numel())
    sums = torch.zeros(flat.shape[0], nb + 1, dtype=torch.float64, device=values.device)
    for b in range(flat.shape[0]):  # row by row: cache-friendly, faster than one index_add_ on dim 1
        sums[b].index_add_(0, idx, flat[b].to(torch.float64) * w)
    n = n_modes[:nb].clone()
    with torch.no_grad():
        empty = n == 0
    mean = sums[:, :nb] / torch.where(empty, torch.ones_like(n), n)
    mean = torch.where(empty, torch.full_like(mean, float("nan")), mean)
    kmean = torch.where(empty, torch.full_like(n, float("nan")), ksum[:nb] / torch.where(empty, torch.ones_like(n), n))
    return kmean, mean.reshape(*batch, nb), n


def default_edges(grid: FourierGrid, bins: int | Tensor | None) -> Tensor:
    """Bin edges in h/Mpc: None -> width k_f from k_f/2 up to the Nyquist k (inclusive);
    int -> that many linear bins over the same range; a tensor -> used as is."""
    kf = grid.k_fundamental
    if bins is None:
        return kf * (torch.arange(grid.n // 2 + 1, dtype=torch.float64) + 0.5)
    if isinstance(bins, int):
        if bins < 1:
            raise ValueError(f"bins must be >= 1; got {bins}")
        return torch.linspace(0.5 * kf, grid.k_nyquist + 0.5 * kf, bins + 1, dtype=torch.float64)
    edges = torch.as_tensor(bins, dtype=torch.float64)
    if edges.dim() != 1 or edges.numel() < 2 or not bool((edges[1:] > edges[:-1]).all()):
        raise ValueError("bins must be an int or a 1-d increasing tensor of at least 2 edges (h/Mpc)")
    return edges


def power_spectrum(
    field: Tensor, box_size: float, bins: int | Tensor | None = None, *, dim: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Binned power spectrum P̂ = V |δ_k|^2 / N_c^2 of periodic fields.

    Args:
        field: ``(*B, n, n)`` or ``(*B, n, n, n)`` real fields (the last ``dim`` axes are space).
        box_size: side length L in Mpc/h.
        bins: None (width k_f from k_f/2 to k_N), an int (linear bins over that range) or a
            1-d tensor of edges in h/Mpc (bin b: edges[b] <= |k| < edges[b+1]).
        dim: spatial dimension (2 or 3). Default: 3 if ``field`` has >= 3 axes and the last
            three are equal, else 2; pass it explicitly for a batch of n 2D fields ``(n, n, n)``.

    Returns:
        k ``(nb,)`` mode-averaged |k| (h/Mpc), P ``(*B, nb)`` in (Mpc/h)^dim, n_modes ``(nb,)``
        (grid modes per bin, see the module docstring for Var(P) = 2 Σ P^2 / n_modes^2).
    """
    if dim is None:
        dim = 3 if field.dim() >= 3 and field.shape[-1] == field.shape[-2] == field.shape[-3] else 2
    n = field.shape[-1]
    if any(s != n for s in field.shape[-dim:]):
        raise ValueError(f"field must be a cubic grid (*B, {', '.join(['n'] * dim)}); got {tuple(field.shape)}")
    grid = fourier_grid(n, dim, float(box_size), str(field.device))
    edges = default_edges(grid, bins)

    def one(f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dk = torch.fft.rfftn(f, dim=grid.fft_dims)
        p = (dk.real * dk.real + dk.imag * dk.imag).double()  # |δ_k|² in the field's precision, summed in float64
        return bin_modes(p * (grid.volume / grid.n_cells**2), grid, edges)

    batch = field.shape[: field.dim() - dim]
    if field.device.type == "cpu" and len(batch) > 0 and grid.n_cells >= 2**16:
        # large grids on CPU: one field at a time beats a batched FFT (it stays in cache)
        rows = [one(f) for f in field.reshape(-1, *grid.shape)]
        P = torch.stack([r[1] for r in rows]).reshape(*batch, -1)
        return rows[0][0], P, rows[0][2]
    return one(field)


def gaussian_log_likelihood(field: Tensor, power: Tensor, box_size: float, dim: int) -> Tensor:
    """Exact log-density of zero-mean periodic Gaussian fields (module docstring).

    Args:
        field: ``(*B, n, ..., n)`` real fields (``dim`` spatial axes).
        power: ``(*B, *rshape)`` P(k) on the rfft grid in (Mpc/h)^dim, > 0 for k ≠ 0 (the k = 0
            entry is ignored).
        box_size: side length L in Mpc/h.
        dim: spatial dimension (2 or 3).

    Returns:
        ``(*B,)`` float64 log-density on the zero-mean hyperplane.
    """
    n = field.shape[-1]
    grid = fourier_grid(n, dim, float(box_size), str(field.device))
    if tuple(power.shape[-dim:]) != grid.rshape:
        raise ValueError(f"power must have rfft shape {grid.rshape}; got {tuple(power.shape)}")
    dk = torch.fft.rfftn(field.double(), dim=grid.fft_dims)
    abs2 = dk.real**2 + dk.imag**2
    nonzero = grid.m2.to(field.device) > 0
    lam = torch.where(
        nonzero, power.double() * (grid.n_cells / grid.volume), torch.ones_like(power, dtype=torch.float64)
    )
    w = torch.where(nonzero, grid.weight.to(field.device), torch.zeros_like(grid.weight.to(field.device)))
    terms = abs2 / (grid.n_cells * lam) + torch.log(2 * math.pi * lam)
    return -0.5 * (w * terms).sum(dim=grid.fft_dims)
