"""Time embeddings for vector-field and score networks.

A scalar time (flow-matching time t ∈ [0, 1], or a diffusion noise level c_noise = ln σ / 4)
is mapped to sinusoidal features at geometrically spaced frequencies,

    e(t) = [sin(ω_1 t), ..., sin(ω_K t), cos(ω_1 t), ..., cos(ω_K t)],
    ω_k = exp(ln ω_min + (k - 1) / (K - 1) · (ln ω_max - ln ω_min)),

so that the network sees both slow and fast functions of t (Vaswani et al. 2017; Tancik et al. 2020).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SinusoidalEmbedding"]


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal features of a scalar.

    Args:
        features: output size (even, >= 2).
        min_frequency: lowest angular frequency ω_min.
        max_frequency: highest angular frequency ω_max.
    """

    frequencies: Tensor  # buffer (features // 2,)

    def __init__(self, features: int = 32, min_frequency: float = 1.0, max_frequency: float = 100.0):
        super().__init__()
        if features < 2 or features % 2:
            raise ValueError(f"SinusoidalEmbedding needs an even number of features >= 2; got {features}")
        if not 0 < min_frequency <= max_frequency:
            raise ValueError(f"need 0 < min_frequency <= max_frequency; got {min_frequency}, {max_frequency}")
        self.features = features
        k = features // 2
        freqs = torch.exp(torch.linspace(math.log(min_frequency), math.log(max_frequency), k))
        self.register_buffer("frequencies", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """t: ``(*B,)`` -> ``(*B, features)``."""
        arg = t.unsqueeze(-1) * self.frequencies.to(t.dtype)
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
