r"""Physics summary encoder for spin configurations on a periodic lattice (the Ising sufficient statistics).

For spins s_i = ±1 on an ``H × W`` torus (N = H W sites) the summary is::

    b   = (1/N) Σ_<ij> s_i s_j     nearest-neighbour bond sum per site (each of the 2N bonds once),
                                    = -E/(N J) at h = 0, in [-2, 2]
    m   = (1/N) Σ_i s_i             magnetisation per site, in [-1, 1]
    |m|                             its modulus (the m -> -m symmetric order parameter)

(b, m) is sufficient for (β, h) of the nearest-neighbour Ising model: p(s | β, h) depends on s only through
them. The three numbers are standardised with a shift and scale set once from training configurations
(:meth:`IsingSummaryEncoder.standardize_from`, stored as buffers), then a small MLP maps them to
``out_features``. The encoder reads raw spins (``x_standardization = "none"``): standardising spins first
would turn the products s_i s_j into something else.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from physgen.shapes import batch_shape_of

__all__ = ["IsingSummaryEncoder", "lattice_summary"]


def lattice_summary(spins: Tensor) -> Tensor:
    """(b, m, |m|) of periodic configurations: ``(*B, H, W)`` -> ``(*B, 3)`` (module docstring)."""
    s = spins if spins.is_floating_point() else spins.to(torch.float32)
    n = s.shape[-1] * s.shape[-2]
    b = (s * (torch.roll(s, 1, -1) + torch.roll(s, 1, -2))).sum((-2, -1)) / n
    m = s.sum((-2, -1)) / n
    return torch.stack([b, m, m.abs()], -1)


class IsingSummaryEncoder(nn.Module):
    """(b, m, |m|) of a periodic spin lattice -> standardise -> MLP -> ``out_features``.

    Args:
        lattice_shape: ``(H, W)`` of one configuration (the data's x shape).
        out_features: E, the summary size handed to the conditional model.
        hidden_features: widths of the MLP's hidden layers (SiLU); empty: one linear layer.

    Shapes: ``forward(x (*B, H, W)) -> (*B, E)``; x holds raw spins ±1 (any real values are accepted;
    the summary is then the same polynomial of them).
    """

    x_standardization = "none"
    accepts = ("lattice",)
    shift: Tensor  # buffers registered in __init__
    scale: Tensor

    def __init__(self, lattice_shape: Sequence[int], out_features: int = 16, hidden_features: Sequence[int] = (64, 64)):
        super().__init__()
        lattice_shape = tuple(int(v) for v in lattice_shape)
        if len(lattice_shape) != 2 or min(lattice_shape) < 2:
            raise ValueError(
                f"IsingSummaryEncoder takes 2D lattices (H, W) with H, W >= 2; got lattice_shape={lattice_shape}"
            )
        if out_features < 1 or any(int(h) < 1 for h in hidden_features):
            raise ValueError(
                f"out_features and hidden_features must be >= 1; got {out_features}, {list(hidden_features)}"
            )
        self.name = "ising_summary"
        self.lattice_shape = lattice_shape
        self.out_features = int(out_features)
        self.config = {
            "lattice_shape": list(lattice_shape),
            "out_features": self.out_features,
            "hidden_features": [int(h) for h in hidden_features],
        }
        self.register_buffer("shift", torch.zeros(3))
        self.register_buffer("scale", torch.ones(3))
        layers: list[nn.Module] = []
        width = 3
        for h in hidden_features:
            layers += [nn.Linear(width, int(h)), nn.SiLU()]
            width = int(h)
        self.net = nn.Sequential(*layers, nn.Linear(width, self.out_features))

    @classmethod
    def from_x_shape(cls, x_shape: tuple[int, ...], **options) -> IsingSummaryEncoder:
        """The encoder for x of event shape ``(H, W)`` (spins of one lattice)."""
        if len(x_shape) != 2:
            raise ValueError(
                f"ising_summary takes spin lattices of shape (L, L); got x of shape {tuple(x_shape)} "
                "(for the simulator's output='summary' (b, m) vectors use the 'mlp' encoder)"
            )
        if "lattice_shape" in options:
            raise ValueError("ising_summary takes lattice_shape from the data's x shape; leave it out")
        return cls(x_shape, **options)

    @torch.no_grad()
    def standardize_from(self, x: Tensor) -> None:
        """Set the summary's shift and scale from raw training configurations ``x (n, H, W)``."""
        batch_shape_of(x, self.lattice_shape, "x")
        z = lattice_summary(x.to(self.shift.device, torch.float32).reshape(-1, *self.lattice_shape))
        sd = z.std(0) if z.shape[0] > 1 else torch.ones(3, device=z.device)
        self.shift.copy_(z.mean(0))
        self.scale.copy_(torch.where(sd > 1e-6, sd, torch.ones_like(sd)))

    def summary(self, x: Tensor) -> Tensor:
        """The standardised (b, m, |m|): ``(*B, H, W)`` -> ``(*B, 3)``."""
        batch_shape_of(x, self.lattice_shape, "x")
        return (lattice_summary(x) - self.shift) / self.scale

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x ``(*B, H, W)`` -> ``(*B, E)``. ``mask`` is not used (accepted for the Encoder protocol)."""
        return self.net(self.summary(x))
