r"""Physics summary encoder for periodic fields: the binned log power spectrum, then an MLP.

For a field δ on an n^d periodic grid (d = 2 or 3) with unnormalised DFT δ_k = Σ_x δ(x) e^{-ik·x}, the
summary is, per isotropic bin b of the integer wavevector length |m| (k = 2π m / L; L drops out after
standardisation, so no box size is needed)::

    P̂_b = (1/N_b) Σ_{m in b} |δ_m|^2 / N_c^2,     s_b = ln(P̂_b + ε)

with ``bins`` linear bins from |m| = 1/2 to n/2 + 1/2 (the Nyquist frequency; the corners beyond it are
left out, and k = 0 is never used), N_b the number of grid modes in bin b (full grid: ±m both
counted) and ε = 1e-30. For a Gaussian field the P̂(k) of every |k| are sufficient statistics; binning
them is the classical compression. s is standardised with a shift and scale set once from raw
training fields (:meth:`PowerSpectrumEncoder.standardize_from`, buffers saved with the estimator),
then an MLP maps it to ``out_features``. The encoder reads raw fields (``x_standardization = "none"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from physgen.shapes import batch_shape_of

__all__ = ["PowerSpectrumEncoder", "binned_log_power"]

_EPS = 1e-30


def _bin_matrix(n: int, dim: int, bins: int) -> Tensor:
    """``(R, bins)`` float32 weights: rfft cell -> its share of each bin's mean (module docstring)."""
    full = torch.fft.fftfreq(n, d=1.0 / n)
    half = torch.arange(n // 2 + 1, dtype=torch.float32)
    mesh = torch.meshgrid(*([full] * (dim - 1) + [half]), indexing="ij")
    square = mesh[0].double() ** 2
    for m in mesh[1:]:
        square = square + m.double() ** 2
    mag = torch.sqrt(square).flatten()
    w = torch.full(mesh[0].shape, 2.0, dtype=torch.float64)
    w[..., 0] = 1.0
    if n % 2 == 0:
        w[..., n // 2] = 1.0
    w = w.flatten()
    edges = torch.linspace(0.5, n / 2 + 0.5, bins + 1, dtype=torch.float64)
    idx = torch.bucketize(mag, edges, right=True) - 1
    keep = (idx >= 0) & (idx < bins) & (mag > 0)
    M = torch.zeros(mag.numel(), bins, dtype=torch.float64)
    M[keep.nonzero()[:, 0], idx[keep]] = w[keep]
    counts = M.sum(0)
    if bool((counts == 0).any()):
        empty = int((counts == 0).nonzero()[0])
        raise ValueError(
            f"power_spectrum: bin {empty} of {bins} holds no grid mode on an n={n} grid; use bins <= {max(1, n // 2)}"
        )
    return (M / counts).float()


def binned_log_power(x: Tensor, matrix: Tensor, dim: int) -> Tensor:
    """ln(P̂_b + ε) of real fields ``(*B, n, ..., n)`` with a :func:`_bin_matrix` -> ``(*B, bins)``."""
    n_cells = 1
    for s in x.shape[-dim:]:
        n_cells *= int(s)
    dk = torch.fft.rfftn(x.float(), dim=tuple(range(-dim, 0)))
    p = (dk.real**2 + dk.imag**2).flatten(-dim) / float(n_cells) ** 2
    return torch.log(p @ matrix.to(p) + _EPS)


class PowerSpectrumEncoder(nn.Module):
    """Binned ln P̂(k) of a periodic field -> standardise -> MLP -> ``out_features`` (module docstring).

    Args:
        field_shape: ``(n, n)`` or ``(n, n, n)``, one field (the data's x shape).
        out_features: E, the summary size handed to the conditional model.
        bins: number of linear |k| bins up to the Nyquist frequency (default n // 2: one per |m| shell).
        hidden_features: widths of the MLP's hidden layers (SiLU); empty: one linear layer.

    Shapes: ``forward(x (*B, *field_shape)) -> (*B, E)``; :meth:`log_power` gives the unstandardised
    ``(*B, bins)`` summary.
    """

    x_standardization = "none"
    accepts = ("field",)
    matrix: Tensor  # buffers registered in __init__
    shift: Tensor
    scale: Tensor

    def __init__(
        self,
        field_shape: Sequence[int],
        out_features: int = 16,
        bins: int | None = None,
        hidden_features: Sequence[int] = (64, 64),
    ):
        super().__init__()
        field_shape = tuple(int(v) for v in field_shape)
        if len(field_shape) not in (2, 3) or len(set(field_shape)) != 1 or field_shape[0] < 4:
            raise ValueError(
                f"PowerSpectrumEncoder takes square or cubic fields (n, n) or (n, n, n) with n >= 4; got "
                f"field_shape={field_shape}"
            )
        n, dim = field_shape[0], len(field_shape)
        bins = n // 2 if bins is None else int(bins)
        if bins < 1 or out_features < 1 or any(int(h) < 1 for h in hidden_features):
            raise ValueError(
                f"bins, out_features and hidden_features must be >= 1; got {bins}, {out_features}, "
                f"{list(hidden_features)}"
            )
        self.name = "power_spectrum"
        self.field_shape, self.dim, self.bins = field_shape, dim, bins
        self.out_features = int(out_features)
        self.config = {
            "field_shape": list(field_shape),
            "out_features": self.out_features,
            "bins": bins,
            "hidden_features": [int(h) for h in hidden_features],
        }
        self.register_buffer("matrix", _bin_matrix(n, dim, bins), persistent=False)
        self.register_buffer("shift", torch.zeros(bins))
        self.register_buffer("scale", torch.ones(bins))
        layers: list[nn.Module] = []
        width = bins
        for h in hidden_features:
            layers += [nn.Linear(width, int(h)), nn.SiLU()]
            width = int(h)
        self.net = nn.Sequential(*layers, nn.Linear(width, self.out_features))

    @classmethod
    def from_x_shape(cls, x_shape: tuple[int, ...], **options) -> PowerSpectrumEncoder:
        """The encoder for fields of event shape ``(n, n)`` or ``(n, n, n)``."""
        if "field_shape" in options:
            raise ValueError("power_spectrum takes field_shape from the data's x shape; leave it out")
        return cls(tuple(x_shape), **options)

    def log_power(self, x: Tensor) -> Tensor:
        """Unstandardised binned ln P̂: ``(*B, *field_shape)`` -> ``(*B, bins)``."""
        batch_shape_of(x, self.field_shape, "x")
        return binned_log_power(x, self.matrix, self.dim)

    @torch.no_grad()
    def standardize_from(self, x: Tensor) -> None:
        """Set the summary's shift and scale from raw training fields ``x (n, *field_shape)``."""
        s = self.log_power(x.to(self.shift.device)).reshape(-1, self.bins)
        sd = s.std(0) if s.shape[0] > 1 else torch.ones_like(self.scale)
        self.shift.copy_(s.mean(0))
        self.scale.copy_(torch.where(sd > 1e-6, sd, torch.ones_like(sd)))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x ``(*B, *field_shape)`` -> ``(*B, E)``. ``mask`` is not used (accepted for the Encoder protocol)."""
        return self.net((self.log_power(x) - self.shift) / self.scale)
