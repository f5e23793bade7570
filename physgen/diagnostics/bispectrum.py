r"""The bispectrum and the reduced bispectrum Q of periodic 2D and 3D fields (FFT shell estimator), per field.

Conventions are those of ``simulators.cosmology.fourier`` and :func:`physgen.diagnostics.emulator.power_spectra`:
``dim`` axes of n cells, side L, N_c = n^dim, V = L^dim; δ_k = Σ_x δ(x) e^{-ik·x} (unnormalised forward DFT),
P̂(k) = V |δ_k|² / N_c², so ⟨δ_k1 δ_k2 δ_k3⟩ = (N_c³ / V²) B(k1, k2, k3) δ^K(k1 + k2 + k3) and

    B̂_ijk = (V² / N_c³) (1 / N_ijk) Σ_{k1 ∈ i, k2 ∈ j, k3 ∈ k, k1 + k2 + k3 = 0} δ_k1 δ_k2 δ_k3,

an average over the N_ijk ordered closed triangles of grid modes with |k1| in shell i, |k2| in j, |k3| in k
(closure modulo the grid; shells up to k_Nyquist / 2 never wrap). Scoccimarro's FFT form: with the inverse
DFT normalised by 1/N_c, I_i(x) = IDFT[δ_k 1_i(k)] and J_i(x) = IDFT[1_i(k)],

    Σ_x I_i I_j I_k = (1/N_c²) Σ_triangles δ_k1 δ_k2 δ_k3,   Σ_x J_i J_j J_k = N_ijk / N_c²,

so B̂_ijk = (V² / N_c³) Σ_x I_i I_j I_k / Σ_x J_i J_j J_k, in units of P². On the same shells
P̂_i = (V / N_c²) Σ_x I_i² / Σ_x J_i² (= :func:`~physgen.diagnostics.emulator.power_spectra` for the same bins),
and the reduced bispectrum is Q_ijk = B_ijk / (P_i P_j + P_j P_k + P_k P_i).

Shells: width ``dk`` (default k_f = 2π/L) from k_f/2 up to ``k_max`` (default k_Nyquist / 4, the range of
issue 21's target; at most k_Nyquist / 2). Triangles (:func:`triangle_configurations`): "all" i ≤ j ≤ k with
the triangle inequality on the shells' mode-averaged |k| (k_k ≤ k_i + k_j, with a 1e-9 relative tolerance so
degenerate (1, 1, 2) shells count; triples that no grid triangle closes are left out), "equilateral"
(i = j = k), or an opening-angle scan ``("scan", i, j)``: every k3 shell for fixed shells i, j.

Errors come from the scatter over fields: :func:`reduced_bispectrum` returns Q from the means (mean B over the
means' P products) and per-field pseudo-values, Q + (B_f - B̄)/D̄ - Q (D_f - D̄)/D̄ with D linearised in the
per-field P (the delta method), whose mean is Q and whose covariance / n is Q's covariance; these rows go to
:func:`~physgen.diagnostics.emulator.mean_difference_chi2` in :func:`compare_bispectra`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Bispectrum", "bispectrum", "triangle_configurations", "reduced_bispectrum", "compare_bispectra"]

_CHUNK = 2**24  # float64 elements of I(x) held at once (128 MB)


@dataclass(frozen=True)
class Bispectrum:
    """Per-field bispectra of n fields on T triangle configurations of nb shells.

    Attributes:
        k: ``(nb,)`` mode-averaged |k| per shell (h/Mpc); edges ``(nb + 1,)``; modes ``(nb,)`` grid modes per shell.
        triangles: ``(T, 3)`` shell indices i ≤ j ≤ k; counts ``(T,)`` ordered closed triangles N_ijk.
        B: ``(n, T)`` bispectrum per field, (Mpc/h)^(2 dim); P: ``(n, nb)`` power spectrum per field on the shells.
    """

    k: np.ndarray
    edges: np.ndarray
    modes: np.ndarray
    triangles: np.ndarray
    counts: np.ndarray
    B: np.ndarray
    P: np.ndarray

    @property
    def k_triangles(self) -> np.ndarray:
        """``(T, 3)`` mode-averaged |k| of the three shells of each configuration."""
        return self.k[self.triangles]


def _as_fields(fields, dim: int | None) -> tuple[np.ndarray, int]:
    if hasattr(fields, "detach"):
        fields = fields.detach().cpu().numpy()
    f = np.asarray(fields, dtype=np.float64)
    if dim is None:  # (n, H, H) and (n, 1, H, H) are 2D; (n, H, H, H) and (n, 1, H, H, H) 3D
        dim = 3 if f.ndim == 5 or (f.ndim == 4 and f.shape[1] != 1) else 2
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3; got {dim}")
    if f.ndim == dim + 2 and f.shape[1] == 1:
        f = f[:, 0]
    if f.ndim == dim:
        f = f[None]
    if f.ndim != dim + 1:
        raise ValueError(f"fields must be (n, {', '.join(['H'] * dim)}) for dim={dim}; got shape {f.shape}")
    if any(s != f.shape[1] for s in f.shape[1:]) or f.shape[1] < 4:
        raise ValueError(
            f"fields must be square (cubic) grids of side >= 4, (n, {', '.join(['H'] * dim)}); got shape {f.shape}"
            " (crop or pad them to a common side)"
        )
    if not np.isfinite(f).all():
        raise ValueError("fields contain NaN or inf values; drop those fields before computing the bispectrum")
    return f, dim


def _kmag(n: int, dim: int, box_size: float) -> np.ndarray:
    """|k| on the rfft grid ``(n,)*(dim-1) + (n//2+1,)`` in h/Mpc."""
    kf = 2 * math.pi / box_size
    full = kf * np.fft.fftfreq(n, 1.0 / n)
    half = kf * np.fft.rfftfreq(n, 1.0 / n)
    mesh = np.meshgrid(*([full] * (dim - 1) + [half]), indexing="ij")
    return np.sqrt(sum(m**2 for m in mesh))


def triangle_configurations(k: np.ndarray, kind="all") -> np.ndarray:
    """Shell triples ``(T, 3)`` (i ≤ j ≤ k, except a scan's k3 order) for shells of mode-averaged |k| ``(nb,)``.

    kind: "all" (triangle inequality on the shell |k|), "equilateral", or ("scan", i, j): every k3 shell that
    closes a triangle with shells i and j, in increasing k3 (the opening angle of k1, k2 from 0 to π).
    """
    k = np.asarray(k, dtype=np.float64)
    nb, tol = k.size, 1e-9 * float(k.max())
    if isinstance(kind, str) and kind == "all":
        t = [(i, j, m) for i in range(nb) for j in range(i, nb) for m in range(j, nb) if k[m] <= k[i] + k[j] + tol]
    elif isinstance(kind, str) and kind == "equilateral":
        t = [(i, i, i) for i in range(nb)]
    elif isinstance(kind, tuple) and len(kind) == 3 and kind[0] == "scan":
        i, j = int(kind[1]), int(kind[2])
        if not (0 <= i < nb and 0 <= j < nb):
            raise ValueError(f"scan shells must lie in 0..{nb - 1}; got ({i}, {j})")
        t = [(i, j, m) for m in range(nb) if abs(k[i] - k[j]) - tol <= k[m] <= k[i] + k[j] + tol]
    else:
        raise ValueError(f"kind must be 'all', 'equilateral' or ('scan', i, j); got {kind!r}")
    if not t:
        raise ValueError(f"no triangle configuration of kind {kind!r} on {nb} shells; raise k_max or lower dk")
    return np.asarray(t, dtype=np.int64)


def bispectrum(
    fields,
    box_size: float,
    *,
    dim: int | None = None,
    k_max: float | None = None,
    dk: float | None = None,
    triangles="all",
) -> Bispectrum:
    """Per-field bispectra of periodic fields by the FFT shell estimator (module docstring).

    Args:
        fields: ``(n, H, H)`` or ``(n, H, H, H)`` real fields (a channel axis of 1 is dropped; one field is a
            batch of 1), numpy or torch.
        box_size: the box side L (Mpc/h).
        dim: 2 or 3 (default: 3 for ``(n, H, H, H)`` and ``(n, 1, H, H, H)``, else 2; pass 3 for one ``(H, H, H)``).
        k_max: the upper edge of the last shell (default k_Nyquist / 4; at most k_Nyquist / 2).
        dk: shell width (default k_f); shells start at k_f / 2.
        triangles: a kind of :func:`triangle_configurations`, or a ``(T, 3)`` array of shell indices.

    Returns:
        a :class:`Bispectrum` (B ``(n, T)``, P ``(n, nb)``).
    """
    f, dim = _as_fields(fields, dim)
    if not (math.isfinite(box_size) and box_size > 0):
        raise ValueError(f"box_size must be a positive length; got {box_size}")
    n = f.shape[1]
    kf, kn = 2 * math.pi / box_size, math.pi * n / box_size
    k_max = kn / 4 if k_max is None else float(k_max)
    dk = kf if dk is None else float(dk)
    if k_max > kn / 2 * (1 + 1e-9):
        raise ValueError(
            f"k_max={k_max:.4g} is above k_Nyquist/2 = {kn / 2:.4g}, where closed triangles wrap around the grid;"
            " lower k_max"
        )
    if not dk > 0:
        raise ValueError(f"dk must be positive; got {dk}")
    nb = int(math.floor((k_max - kf / 2) / dk + 1e-9))
    if nb < 1:
        raise ValueError(f"no shell of width dk={dk:.4g} fits between k_f/2={kf / 2:.4g} and k_max={k_max:.4g}")
    edges = kf / 2 + dk * np.arange(nb + 1)
    kmag = _kmag(n, dim, box_size)
    weight = np.full(kmag.shape, 2.0)
    weight[..., 0] = 1.0
    if n % 2 == 0:
        weight[..., -1] = 1.0
    idx = np.digitize(kmag, edges) - 1
    masks = np.stack([(idx == b) & (kmag > 0) for b in range(nb)]).astype(np.float64)  # (nb, *rshape)
    modes = (masks * weight).sum(axis=tuple(range(1, dim + 1)))
    if (modes == 0).any():
        raise ValueError(f"{int((modes == 0).sum())} of the {nb} shells hold no grid mode; use a larger dk")
    k = (masks * weight * kmag).sum(axis=tuple(range(1, dim + 1))) / modes
    tri = triangle_configurations(k, triangles) if not isinstance(triangles, np.ndarray) else triangles
    tri = np.asarray(tri, dtype=np.int64)
    if tri.ndim != 2 or tri.shape[1] != 3 or tri.min() < 0 or tri.max() >= nb:
        raise ValueError(f"triangles must be (T, 3) shell indices in 0..{nb - 1}; got {tri.shape}")
    axes = tuple(range(-dim, 0))
    shape = (n,) * dim

    def triple(u: np.ndarray) -> np.ndarray:  # u (m, nb, N_c) -> Σ_x u_i u_j u_k (m, T)
        out = np.empty((u.shape[0], len(tri)))
        for i, j in {(int(a), int(b)) for a, b, _ in tri}:
            sel = np.flatnonzero((tri[:, 0] == i) & (tri[:, 1] == j))
            out[:, sel] = np.einsum("mx,mtx->mt", u[:, i] * u[:, j], u[:, tri[sel, 2]])
        return out

    J = np.fft.irfftn(masks, s=shape, axes=axes).reshape(1, nb, -1)
    counts_x = triple(J)[0]  # N_ijk / N_c²
    norm_j = (J[0] ** 2).sum(-1)  # N_i / N_c
    empty = counts_x <= 0.5 / n ** (2 * dim)
    if empty.any() and isinstance(triangles, np.ndarray):
        raise ValueError(f"shells {tuple(tri[empty][0].tolist())} close no triangle of grid modes; leave them out")
    if empty.all():
        raise ValueError(f"no triangle of grid modes closes on these {nb} shells; raise k_max or dk")
    tri, counts_x = tri[~empty], counts_x[~empty]  # a kind's shell triples that no grid triangle closes
    nc, vol = n**dim, box_size**dim
    rows = max(1, _CHUNK // (nb * nc))
    B = np.empty((len(f), len(tri)))
    P = np.empty((len(f), nb))
    for s in range(0, len(f), rows):
        dkf = np.fft.rfftn(f[s : s + rows], axes=axes)
        I = np.fft.irfftn(dkf[:, None] * masks, s=shape, axes=axes).reshape(len(dkf), nb, -1)
        B[s : s + rows] = triple(I) / counts_x * (vol**2 / nc**3)
        P[s : s + rows] = (I**2).sum(-1) / norm_j * (vol / nc**2)
    return Bispectrum(k, edges, modes, tri, np.rint(counts_x * nc**2), B, P)


def _denominator(P: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = P[..., tri[:, 0]], P[..., tri[:, 1]], P[..., tri[:, 2]]
    return a * b + b * c + c * a


def reduced_bispectrum(bs: Bispectrum) -> dict:
    """Q = mean B / (P̄_i P̄_j + P̄_j P̄_k + P̄_k P̄_i) per configuration, with per-field pseudo-values (delta method).

    Returns:
        ``{"Q" (T,), "err" (T,) standard error, "rows" (n, T) pseudo-values whose mean is Q}``.
    """
    B, P, tri = bs.B, bs.P, bs.triangles
    if len(B) < 2:
        raise ValueError(f"errors of Q need at least 2 fields; got {len(B)}")
    Bm, Pm = B.mean(0), P.mean(0)
    D = _denominator(Pm, tri)
    Q = Bm / D
    dP = P - Pm
    # dD = (P_j + P_k) dP_i + (P_i + P_k) dP_j + (P_i + P_j) dP_k at the means
    i, j, k = tri[:, 0], tri[:, 1], tri[:, 2]
    dD = (Pm[j] + Pm[k]) * dP[:, i] + (Pm[i] + Pm[k]) * dP[:, j] + (Pm[i] + Pm[j]) * dP[:, k]
    rows = Q + (B - Bm) / D - Q * dD / D
    return {"Q": Q, "err": rows.std(0, ddof=1) / math.sqrt(len(rows)), "rows": rows}


def compare_bispectra(
    sim,
    emu,
    *,
    box_size: float,
    dim: int | None = None,
    k_max: float | None = None,
    dk: float | None = None,
    triangles="all",
    covariance: str = "full",
) -> dict:
    """Reduced bispectrum Q of emulated against simulated fields at one θ, in units of the simulator's scatter.

    Args:
        sim, emu: fields ``(n_sim, H, H)`` / ``(n_emu, H, H)`` (or 3D), the same H.
        box_size, dim, k_max, dk, triangles: as :func:`bispectrum` (default shells of width k_f up to k_Nyquist/4).
        covariance: "full" (Hartlap-corrected inverse of the simulator's covariance of Q; needs n_sim > T + 2, else
            a ValueError naming the fix), "diagonal" (variances only), or "auto" (full when n_sim > T + 2).

    Returns:
        JSON-ready ``{"k" (nb,), "triangles" (T, 3), "k_triangles", "counts", "Q_sim", "err_sim", "Q_emu",
        "err_emu" (T,), "B_sim", "B_emu" (T,)}`` and the χ² of :func:`~physgen.diagnostics.emulator.mean_difference_chi2`
        on the Q pseudo-values (``covariance`` says which was used).
    """
    from physgen.diagnostics.two_sample import mean_difference_chi2

    s, dim_s = _as_fields(sim, dim)
    e, dim_e = _as_fields(emu, dim)
    if s.shape[1:] != e.shape[1:]:
        raise ValueError(f"simulated fields are {s.shape[1:]}, emulated {e.shape[1:]}; compare fields of one size")
    bs = bispectrum(s, box_size, dim=dim_s, k_max=k_max, dk=dk, triangles=triangles)
    be = bispectrum(e, box_size, dim=dim_e, k_max=k_max, dk=dk, triangles=bs.triangles)
    T = len(bs.triangles)
    if covariance == "auto" or T == 1:  # one configuration: the variance is the covariance
        covariance = "full" if len(s) > T + 2 and T > 1 else "diagonal"
    if covariance == "full" and len(s) <= T + 2:
        raise ValueError(
            f"the covariance of Q on {T} triangle configurations needs more than {T + 2} simulated fields; got"
            f" {len(s)} (simulate more fields, or fewer configurations: a lower k_max, a larger dk, or"
            " triangles='equilateral'; or covariance='diagonal')"
        )
    if len(e) < 2:
        raise ValueError(f"errors of the emulated Q need at least 2 emulated fields; got {len(e)}")
    qs, qe = reduced_bispectrum(bs), reduced_bispectrum(be)
    chi = mean_difference_chi2(qs["rows"], qe["rows"], covariance=covariance)
    return {
        "k": bs.k.tolist(),
        "triangles": bs.triangles.tolist(),
        "k_triangles": bs.k_triangles.tolist(),
        "counts": bs.counts.tolist(),
        "Q_sim": qs["Q"].tolist(),
        "err_sim": qs["err"].tolist(),
        "Q_emu": qe["Q"].tolist(),
        "err_emu": qe["err"].tolist(),
        "B_sim": bs.B.mean(0).tolist(),
        "B_emu": be.B.mean(0).tolist(),
        **chi,
    }
