r"""Conditional variational autoencoder (Kingma & Welling 2014; Sohn et al. 2015) for periodic fields: a baseline
emulator.

Latent z ∈ R^Z with prior N(0, I); decoder p(x | z, c) = N(μ_φ(z, c), σ_x² I) with μ_φ the DCGAN generator of
:mod:`physgen.models._dcgan` and one learned σ_x per channel; encoder q(z | x, c) = N(m, diag s²) from a
periodic convolution trunk, its features flattened and concatenated with c. Training maximises the ELBO

    ELBO(x | c) = E_q[ln p(x | z, c)] - KL(q(z | x, c) || N(0, I)) <= ln p(x | c),

with one reparameterised draw per row; the loss is -ELBO per element of x (so its scale does not depend on
the field size). A warm-up ``kl_warmup`` (training steps over which the KL weight grows linearly to 1) avoids
an early posterior collapse; validation always uses the full ELBO.

Sampling draws z ~ N(0, I) and x = μ_φ(z, c) + σ_x ε (the model's distribution: its white noise adds power at
every k, which the diagnostics show); ``sample_mean=True`` returns μ_φ(z, c) instead (smoother fields, not
draws of the model).

Density. The family has no exact ``log_prob``: :meth:`VAE.elbo` is the evidence lower bound and
:meth:`VAE.log_prob_lower_bound` the importance-weighted bound (Burda et al. 2016) with K draws, tighter as K
grows; both in the model's (standardised) space. An :class:`physgen.Emulator` of this family therefore
raises NotImplementedError from ``log_prob``.
"""

from __future__ import annotations

import math
from typing import TypedDict

import torch
from torch import Tensor, nn

from physgen.models._dcgan import ConvCritic, ConvDecoder, field_shape

__all__ = ["VAE"]

_LOG_2PI = math.log(2 * math.pi)


class _VAEConfig(TypedDict):
    """``VAE.config``: the constructor's arguments, JSON-serialisable (``VAE(**config)`` rebuilds it)."""

    event_shape: list[int]
    context_dim: int
    latent_dim: int
    channels: list[int]
    embedding: int
    kl_warmup: int
    sample_mean: bool


class VAE(nn.Module):
    """Conditional VAE for fields ``(H, W)`` / ``(C, H, W)`` (module docstring).

    Args:
        event_shape: the field's shape; H and W multiples of 2^len(channels).
        context_dim: C (0 = unconditional).
        latent_dim: Z.
        channels: decoder channels from the coarsest level up (the encoder uses them reversed).
        embedding: size of the decoder's context embedding.
        kl_warmup: training steps over which the KL weight rises from 0 to 1 (0: always 1).
        sample_mean: :meth:`sample` returns decoder means instead of draws.
    """

    fit_defaults = {"batch_size": 64, "max_epochs": 300, "patience": 30, "schedule": "plateau", "lr": 1e-3}
    sample_block = 4096
    step: Tensor  # buffer registered in __init__: training steps taken (the KL warm-up clock)

    def __init__(
        self,
        event_shape: tuple[int, ...],
        context_dim: int,
        *,
        latent_dim: int = 64,
        channels: tuple[int, ...] = (128, 64, 32),
        embedding: int = 64,
        kl_warmup: int = 500,
        sample_mean: bool = False,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        chw = field_shape(event_shape, len(channels), "vae")
        if latent_dim < 1 or embedding < 1 or kl_warmup < 0 or context_dim < 0 or min(channels) < 1:
            raise ValueError("VAE needs latent_dim, embedding and channels >= 1, kl_warmup >= 0 and context_dim >= 0")
        self.name = "vae"
        self.event_shape, self.context_dim, self._chw = tuple(int(s) for s in event_shape), int(context_dim), chw
        self.latent_dim = int(latent_dim)
        self.decoder = ConvDecoder(chw, latent_dim, context_dim, channels, embedding)
        self.encoder_trunk = ConvCritic(chw[0], channels[::-1], spectral_norm=False)
        cells = channels[0] * (chw[1] // 2 ** len(channels)) * (chw[2] // 2 ** len(channels))
        self.encoder_head = nn.Sequential(
            nn.Linear(cells + context_dim, 4 * latent_dim), nn.SiLU(), nn.Linear(4 * latent_dim, 2 * latent_dim)
        )
        self.log_sigma_x = nn.Parameter(torch.zeros(chw[0]))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.config: _VAEConfig = {
            "event_shape": list(self.event_shape),
            "context_dim": self.context_dim,
            "latent_dim": self.latent_dim,
            "channels": list(channels),
            "embedding": int(embedding),
            "kl_warmup": int(kl_warmup),
            "sample_mean": bool(sample_mean),
        }

    # ------------------------------------------------------------------ pieces
    def encode(self, x: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """q(z | x, c): x ``(N, *event)``, c ``(N, C)`` -> mean, log-variance ``(N, Z)``."""
        h = self.encoder_trunk(x.reshape(-1, *self._chw)).flatten(1)
        if c is not None and self.context_dim > 0:
            h = torch.cat([h, c], -1)
        mean, logvar = self.encoder_head(h).chunk(2, -1)
        return mean, logvar.clamp(-12.0, 8.0)

    def decode(self, z: Tensor, c: Tensor | None) -> Tensor:
        """Decoder mean μ(z, c): ``(N, Z), (N, C) -> (N, C_field, H, W)``."""
        return self.decoder(z, c if self.context_dim > 0 else None)

    def _log_lik(self, x: Tensor, mu: Tensor) -> Tensor:
        """ln N(x; μ, σ_x²) summed over the field: ``(N, C, H, W)`` each -> ``(N,)``."""
        ls = self.log_sigma_x[:, None, None]
        return (-0.5 * ((x - mu) * torch.exp(-ls)) ** 2 - ls - 0.5 * _LOG_2PI).flatten(1).sum(-1)

    def _rows(self, target: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor | None, tuple[int, ...]]:
        batch = target.shape[: target.dim() - len(self.event_shape)]
        if tuple(target.shape[len(batch) :]) != self.event_shape:
            raise ValueError(
                f"target must have shape (*B, {', '.join(map(str, self.event_shape))}); got {tuple(target.shape)}"
            )
        x = target.reshape(-1, *self._chw)
        if context is not None:
            context = context.expand(*batch, context.shape[-1]).reshape(-1, context.shape[-1])
        return x, context, tuple(batch)

    # ------------------------------------------------------------------ bounds
    def elbo(
        self,
        target: Tensor,
        context: Tensor | None,
        *,
        generator: torch.Generator | None = None,
        kl_weight: float = 1.0,
    ) -> Tensor:
        """One-draw ELBO (a lower bound on ln q(target | context), not the density): target ``(*B, *event)``,
        context ``(*B, C)`` -> ``(*B,)``."""
        x, c, batch = self._rows(target, context)
        mean, logvar = self.encode(x, c)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * eps
        kl = 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).sum(-1)
        return (self._log_lik(x, self.decode(z, c)) - kl_weight * kl).reshape(batch)

    @torch.no_grad()
    def log_prob_lower_bound(
        self, target: Tensor, context: Tensor | None, *, num_samples: int = 64, generator: torch.Generator | None = None
    ) -> Tensor:
        """Importance-weighted bound ln (1/K) Σ_k p(x, z_k | c) / q(z_k | x, c) <= ln q(target | context):
        target ``(*B, *event)``, context ``(*B, C)`` -> ``(*B,)``. Not the density: a bound, tighter with K."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples}")
        x, c, batch = self._rows(target, context)
        mean, logvar = self.encode(x, c)
        std = torch.exp(0.5 * logvar)
        terms = []
        for _ in range(num_samples):
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + std * eps
            log_q = (-0.5 * eps**2 - 0.5 * logvar - 0.5 * _LOG_2PI).sum(-1)
            log_p = (-0.5 * z**2 - 0.5 * _LOG_2PI).sum(-1)
            terms.append(self._log_lik(x, self.decode(z, c)) + log_p - log_q)
        return (torch.logsumexp(torch.stack(terms), 0) - math.log(num_samples)).reshape(batch)

    def loss(self, target: Tensor, context: Tensor | None, *, generator: torch.Generator | None = None) -> Tensor:
        """-ELBO per element of x (KL weight warmed up in training): target ``(B, *event)``, context ``(B, C)`` -> scalar."""
        weight = 1.0
        if self.training:
            warm = self.config["kl_warmup"]
            weight = min(1.0, float(self.step + 1) / warm) if warm > 0 else 1.0
            self.step += 1
        elbo = self.elbo(target, context, generator=generator, kl_weight=weight)
        return -elbo.mean() / math.prod(self.event_shape)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self, shape: tuple[int, ...], context: Tensor | None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Fields: context ``(*Bc, C)`` -> ``(*shape, *Bc, *event)`` (module docstring)."""
        shape = tuple(shape)
        n = math.prod(shape)
        ref = self.log_sigma_x
        bc = context.shape[:-1] if context is not None else ()
        rows = math.prod(bc)
        c = (
            context.reshape(-1, context.shape[-1]).expand(n, rows, context.shape[-1]).reshape(-1, context.shape[-1])
            if context is not None
            else None
        )
        z = torch.randn(n * rows, self.latent_dim, generator=generator, device=ref.device, dtype=ref.dtype)
        x = self.decode(z, c)
        if not self.config["sample_mean"]:
            x = x + torch.exp(self.log_sigma_x)[:, None, None] * torch.randn(
                x.shape, generator=generator, device=ref.device, dtype=ref.dtype
            )
        return x.reshape(*shape, *bc, *self.event_shape)
