"""Convolutional encoder for 2D and 3D fields (images, density grids, lattice configurations).

A stack of ``[conv(k, stride 1) -> SiLU -> conv(k, stride 2) -> SiLU]`` stages halves the spatial
size at each stage while the channels grow; global average pooling over the remaining grid and
a linear layer give the summary ``(*B, E)``. With ``periodic=True`` every convolution pads
circularly (``padding_mode="circular"``), so a field on a torus (periodic boundary conditions) has
no artificial edges; the global average pooling then makes the encoder invariant to circular
translations by multiples of the total stride.

Accepted field layouts for ``field_shape``:

* ``(H, W)`` (2D, one channel) and ``(C, H, W)`` with ``spatial_dims=2``;
* ``(H, W, L)`` with ``spatial_dims=3`` (one channel) and ``(C, H, W, L)`` (3D).

A 3-tuple is ambiguous, so it requires ``spatial_dims``. Fields are standardised with one global
mean/std (``x_standardization = "global"``).

Pooling (``pooling``):

* ``"mean"`` (default, the original encoder): global average of the last stage's feature maps.
* ``"moments"``: from the output of *every* stage, the mean m_c and ln(mean of h_c^2 + 1e-6) of each
  channel c. A convolution is a band-pass filter, so the log mean square of a feature map is a learned
  log band power: for Gaussian random fields, whose information is all in the power spectrum (a
  second moment), this is the statistic the mean pool cannot form, and pooling every stage keeps the
  small scales that the stride-2 stages average away. The pooled vector goes through a two-layer MLP
  (SiLU, ``head_hidden`` units) to ``out_features``. Measured on 32×32 Gaussian fields in
  docs/workflow_field_cosmology.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from physgen.shapes import batch_shape_of

__all__ = ["CNNEncoder"]


class CNNEncoder(nn.Module):
    """CNN summary network for fields.

    Args:
        field_shape: the event shape of one field (see the module docstring).
        out_features: E.
        channels: channels of each stage (each stage halves the spatial size).
        kernel_size: odd convolution kernel size.
        periodic: circular padding (periodic boundary conditions).
        spatial_dims: 2 or 3; required when ``field_shape`` has 3 entries.
        pooling: "mean" (last stage, linear head: the original encoder) or "moments" (mean and log mean
            square of every stage's channels, MLP head; module docstring).
        head_hidden: hidden units of the MLP head of ``pooling="moments"``.
    """

    x_standardization = "global"
    accepts = ("field", "lattice")

    def __init__(
        self,
        field_shape: Sequence[int],
        out_features: int = 32,
        channels: Sequence[int] = (16, 32, 64),
        kernel_size: int = 3,
        periodic: bool = False,
        spatial_dims: int | None = None,
        pooling: str = "mean",
        head_hidden: int = 128,
    ):
        super().__init__()
        field_shape = tuple(int(s) for s in field_shape)
        if len(field_shape) == 3 and spatial_dims is None:
            raise ValueError(
                f"field_shape {field_shape} is ambiguous: pass spatial_dims=2 for (C, H, W) or spatial_dims=3 for (H, W, L)"
            )
        if spatial_dims is None:
            spatial_dims = {2: 2, 4: 3}.get(len(field_shape))
        if spatial_dims not in (2, 3) or len(field_shape) not in (spatial_dims, spatial_dims + 1):
            raise ValueError(
                f"CNNEncoder takes (H, W), (C, H, W), (H, W, L) or (C, H, W, L) fields; got field_shape={field_shape}, "
                f"spatial_dims={spatial_dims}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive; got {kernel_size}")
        if pooling not in ("mean", "moments"):
            raise ValueError(f"pooling must be 'mean' or 'moments'; got {pooling!r}")
        if len(channels) < 1 or out_features < 1 or min(field_shape) < 1:
            raise ValueError("CNNEncoder needs at least one stage, out_features >= 1 and a non-empty field")
        self.name = "cnn"
        self.field_shape, self.spatial_dims = field_shape, spatial_dims
        self.has_channels = len(field_shape) == spatial_dims + 1
        self.out_features = out_features
        self.config = {
            "field_shape": list(field_shape),
            "out_features": out_features,
            "channels": list(channels),
            "kernel_size": kernel_size,
            "periodic": periodic,
            "spatial_dims": spatial_dims,
        }
        if pooling != "mean":  # the original config (and saved files) have no pooling key: "mean"
            self.config.update(pooling=pooling, head_hidden=int(head_hidden))
        self.pooling = pooling
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        padding = kernel_size // 2
        padding_mode: Literal["circular", "zeros"] = "circular" if periodic else "zeros"
        layers: list[nn.Module] = []
        c_in = field_shape[0] if self.has_channels else 1
        for c in channels:
            layers += [
                conv(c_in, c, kernel_size, padding=padding, padding_mode=padding_mode),
                nn.SiLU(),
                conv(c, c, kernel_size, stride=2, padding=padding, padding_mode=padding_mode),
                nn.SiLU(),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head: nn.Module  # a Linear ("mean") or a two-layer MLP ("moments")
        if pooling == "mean":
            self.head = nn.Linear(c_in, out_features)
        else:
            pooled = 2 * sum(int(c) for c in channels)
            self.head = nn.Sequential(
                nn.Linear(pooled, int(head_hidden)), nn.SiLU(), nn.Linear(int(head_hidden), out_features)
            )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x ``(*B, *field_shape)`` -> ``(*B, E)``. ``mask`` is not used (accepted for the Encoder protocol)."""
        batch = batch_shape_of(x, self.field_shape, "field")
        spatial = self.field_shape[-self.spatial_dims :]
        c = self.field_shape[0] if self.has_channels else 1
        h = x.reshape(-1, c, *spatial)
        if self.pooling == "mean":
            h = self.features(h)
            return self.head(h.mean(dim=tuple(range(2, h.dim())))).reshape(*batch, self.out_features)
        pooled = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i % 4 == 3:  # the end of a stage
                dims = tuple(range(2, h.dim()))
                pooled += [h.mean(dim=dims), torch.log(h.square().mean(dim=dims) + 1e-6)]
        return self.head(torch.cat(pooled, dim=-1)).reshape(*batch, self.out_features)
