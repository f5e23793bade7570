r"""Convolutional stacks of the GAN and VAE baselines (DCGAN / CosmoGAN style) for periodic 2D fields.

* :class:`ConvDecoder` (the generator, the VAE's decoder): ``(latent (N, Z), context (N, C)) -> (N, ch, H, W)``.
  A linear map of [z, A(c)] to ``channels[0]`` maps of size (H / 2^L, W / 2^L), then L blocks of a periodic
  transposed convolution (kernel 4, stride 2: the input is padded circularly by one cell and the output
  cropped by 3, so the block is exactly equivariant to periodic shifts), batch normalisation, a FiLM
  modulation by the context embedding ((1 + a) h + b) and ReLU; a periodic 3x3 convolution gives the field.
* :class:`ConvCritic` (the discriminator, the VAE's encoder trunk): periodic stride-2 convolutions
  (kernel 4) with LeakyReLU(0.2), optionally spectrally normalised (one power iteration per training
  forward, Miyato et al. 2018). ``frozen=True`` runs it with detached weights (a generator loss that must not
  move the critic).
* :func:`field_features` / :func:`energy_score`: the sample-quality score a GAN is validated by.

Event shapes: ``(H, W)`` or ``(C, H, W)`` with H and W multiples of 2^L (L = len(channels)).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["field_shape", "ConvDecoder", "ConvCritic", "field_features", "energy_score"]


def field_shape(event_shape: Sequence[int], levels: int, family: str) -> tuple[int, int, int]:
    """``(H, W)`` / ``(C, H, W)`` -> (C, H, W); a ValueError names the shapes the family takes."""
    shape = tuple(int(s) for s in event_shape)
    chw = shape if len(shape) == 3 else (1, *shape) if len(shape) == 2 else None
    m = 2**levels
    if chw is None or min(chw) < 1 or chw[1] % m or chw[2] % m:
        raise ValueError(
            f"the {family!r} family takes fields (H, W) or (C, H, W) with H and W multiples of "
            f"2^len(channels) = {m}; got event shape {shape} (use a flow for vectors, or fewer channels levels)"
        )
    return chw


class _PeriodicUp(nn.Module):
    """Transposed convolution (k=4, s=2) on the torus: ``(N, c_in, h, w) -> (N, c_out, 2h, 2w)``."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=0)

    def forward(self, h: Tensor) -> Tensor:
        out = self.conv(F.pad(h, (1, 1, 1, 1), mode="circular"))
        return out[..., 3:-3, 3:-3]


class ConvDecoder(nn.Module):
    """Generator / decoder (module docstring): ``z (N, Z), c (N, C) | None -> (N, ch, H, W)``."""

    def __init__(
        self, chw: tuple[int, int, int], latent_dim: int, context_dim: int, channels: Sequence[int], embedding: int
    ):
        super().__init__()
        self.chw, self.channels = chw, tuple(channels)
        levels = len(self.channels)
        self.h0, self.w0 = chw[1] // 2**levels, chw[2] // 2**levels
        self.embed = (
            nn.Sequential(nn.Linear(context_dim, embedding), nn.SiLU(), nn.Linear(embedding, embedding))
            if context_dim > 0
            else None
        )
        e = embedding if context_dim > 0 else 0
        self.inp = nn.Linear(latent_dim + e, self.channels[0] * self.h0 * self.w0)
        outs = [*self.channels[1:], self.channels[-1]]
        self.ups = nn.ModuleList(_PeriodicUp(a, b) for a, b in zip(self.channels, outs))
        self.norms = nn.ModuleList(nn.BatchNorm2d(b) for b in outs)
        self.films = nn.ModuleList(nn.Linear(e, 2 * b) for b in outs) if e else None
        self.out = nn.Conv2d(outs[-1], chw[0], 3, padding=1, padding_mode="circular")

    def forward(self, z: Tensor, c: Tensor | None) -> Tensor:
        emb = self.embed(c) if self.embed is not None and c is not None else None
        h = self.inp(torch.cat([z, emb], -1) if emb is not None else z)
        h = F.relu(h.reshape(-1, self.channels[0], self.h0, self.w0))
        for i, (up, norm) in enumerate(zip(self.ups, self.norms)):
            h = norm(up(h))
            if emb is not None:
                assert self.films is not None  # emb is only set with a context, which builds the FiLM layers
                scale, shift = self.films[i](emb)[:, :, None, None].chunk(2, dim=1)
                h = torch.addcmul(shift, h, 1.0 + scale)
            h = F.relu(h)
        return self.out(h)


class ConvCritic(nn.Module):
    """Periodic stride-2 convolution trunk: ``(N, ch, H, W) -> (N, channels[-1], H/2^L, W/2^L)``."""

    def __init__(self, in_channels: int, channels: Sequence[int], *, spectral_norm: bool):
        super().__init__()
        chans = [in_channels, *channels]
        convs = [nn.Conv2d(a, b, 4, stride=2) for a, b in zip(chans[:-1], chans[1:])]
        self.convs = nn.ModuleList(convs)
        self.spectral_norm = bool(spectral_norm)
        if self.spectral_norm:
            for i, conv in enumerate(convs):
                self.register_buffer(f"u{i}", F.normalize(torch.randn(conv.out_channels), dim=0))

    def weight(self, i: int, frozen: bool) -> Tensor:
        w = cast(nn.Conv2d, self.convs[i]).weight  # a ModuleList types its items as nn.Module
        if not self.spectral_norm:
            return w.detach() if frozen else w
        u = getattr(self, f"u{i}")
        flat = w.reshape(w.shape[0], -1)
        with torch.no_grad():
            v = F.normalize(flat.t() @ u, dim=0)
            u_new = F.normalize(flat @ v, dim=0)
            if self.training and not frozen:
                u.copy_(u_new)
        sigma = u_new @ flat @ v  # u_new, not the buffer: a later forward updates the buffer in place
        w = w / sigma.clamp_min(1e-12)
        return w.detach() if frozen else w

    def forward(self, x: Tensor, *, frozen: bool = False) -> Tensor:
        h = x
        for i, conv in enumerate(cast(Iterable[nn.Conv2d], self.convs)):  # items typed nn.Module by ModuleList
            assert conv.bias is not None  # built with the default bias=True
            b = conv.bias.detach() if frozen else conv.bias
            h = F.leaky_relu(
                F.conv2d(F.pad(h, (1, 2, 1, 2), mode="circular"), self.weight(i, frozen), b, stride=2), 0.2
            )
        return h


def field_features(x: Tensor) -> Tensor:
    """Features of standardised fields ``(N, ch, H, W) -> (N, F)``: the field / √(ch H W) and the log of its
    radially binned power (H // 2 bins per channel, k = 0 left out) / √bins; both parts of norm O(1)."""
    n, ch, h, w = x.shape
    p = torch.fft.rfft2(x, norm="ortho").abs().square()
    ky = torch.fft.fftfreq(h, device=x.device)[:, None]
    kx = torch.fft.rfftfreq(w, device=x.device)[None, :]
    kbin = (torch.sqrt(ky**2 + kx**2) * min(h, w)).round().long().clamp_max(min(h, w) // 2).reshape(-1)
    nb = min(h, w) // 2
    onehot = F.one_hot(kbin, nb + 1)[:, 1:].to(x.dtype)  # k = 0 left out
    power = p.reshape(n, ch, -1) @ onehot / onehot.sum(0).clamp_min(1)
    logp = torch.log(power + 1e-6).reshape(n, -1) / math.sqrt(ch * nb)
    return torch.cat([x.reshape(n, -1) / math.sqrt(ch * h * w), logp], -1)


def energy_score(real: Tensor, fake1: Tensor, fake2: Tensor) -> Tensor:
    """Mean energy score of two draws per row against the data row, on :func:`field_features`:
    ``mean_i [ |f(y_i) - f(x_i)| + |f(y'_i) - f(x_i)| - |f(y_i) - f(y'_i)| ] / 2``: a proper scoring rule
    (lowest in expectation when the draws follow the data's conditional law)."""
    fr, f1, f2 = field_features(real), field_features(fake1), field_features(fake2)
    return ((f1 - fr).norm(dim=-1) + (f2 - fr).norm(dim=-1) - (f1 - f2).norm(dim=-1)).mean() / 2
