"""Conditional U-Net for 2D fields: the vector-field / denoiser network of flow matching and diffusion
when the target is a field ``(C, H, W)`` (the field counterpart of :class:`physgen.nn.ResidualMLP`).

Conditioning. A scalar time t (flow-matching time, or a diffusion noise level) and a context c give

    e = SiLU(B(sinusoidal(t)) + A(c)),

where B and A are two-layer MLPs; A(c) does not depend on t, so samplers compute it once per call
(:meth:`UNet.embed_context`) and reuse it at every solver step. Each residual block is
(Dhariwal & Nichol 2021, FiLM: Perez et al. 2018; [a, b] = U e)

    u = Conv(SiLU(GN(h))),    h <- S h + Conv(SiLU((1 + a) ⊙ GN(u) + b)),

with GroupNorm GN, a per-channel scale a and shift b, and S a 1x1 convolution when the channels change
(the identity otherwise).

Architecture. With L = len(channels) levels, level i works at resolution 2**-i at ``channels[i]``
channels: ``num_res_blocks`` blocks on the way down (then 2x2 average pooling), one middle block at the
coarsest level, and on the way up ``num_res_blocks`` blocks fed by the concatenation of the upsampled
path and the level's skip connection; between levels the path is mapped to the finer level's channels
by a 1x1 convolution at the coarse resolution, then upsampled by nearest neighbour (cheap, and the 3x3
convolution that follows avoids checkerboard artefacts). The output head GN -> SiLU -> Conv starts at
zero weights and bias, so an untrained network outputs exactly 0.

Field sizes and boundaries. A field whose H or W is not a multiple of m = 2**(L-1) is padded to the next
multiple (circularly when ``periodic``, else by reflection) and the output is cropped back. With
``periodic=True`` every 3x3 convolution pads circularly and pooling / upsampling act on aligned 2x2
cells, so for H and W multiples of m the network is exactly equivariant to periodic translations by
multiples of m pixels (a field on a torus: lattice configurations, cosmological boxes). Without it,
convolutions pad with zeros.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from physgen.nn.embeddings import SinusoidalEmbedding

__all__ = ["UNet"]

_PaddingMode = Literal["circular", "zeros"]


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class _ResBlock(nn.Module):
    """Residual block conditioned on e by FiLM: ``(N, c_in, h, w), (N, E) -> (N, c_out, h, w)``."""

    def __init__(self, c_in: int, c_out: int, cond: int, groups: int, padding_mode: _PaddingMode):
        super().__init__()
        self.c_out = c_out
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode=padding_mode)
        self.film = nn.Linear(cond, 2 * c_out)
        self.norm2 = _norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode=padding_mode)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        u = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.film(e)[:, :, None, None].split(self.c_out, dim=1)
        u = torch.addcmul(shift, self.norm2(u), 1.0 + scale)
        return self.skip(h) + self.conv2(F.silu(u))


class UNet(nn.Module):
    """Conditional U-Net f(x, t, c) for fields ``(C, H, W)``, conditioned on a time and a context.

    Args:
        event_shape: ``(C, H, W)`` of one field (positive sizes; any H, W, see the module docstring).
        context_features: size of the context c (0 = no context).
        channels: channels of each resolution level; ``len(channels)`` levels, ``len(channels) - 1``
            halvings of the resolution.
        num_res_blocks: residual blocks per level on each of the down and up paths.
        time_features: size of the sinusoidal time embedding.
        periodic: circular padding everywhere (periodic boundary conditions).
        max_frequency: highest angular frequency of the time embedding (the lowest is 1).
        embedding_features: size E of the conditioning vector e and of the context embedding.
        groups: GroupNorm groups (the gcd with each channel count is used).

    Raises:
        ValueError: if ``event_shape`` is not ``(C, H, W)`` with positive sizes, or another
            hyperparameter is out of range.
    """

    name = "unet"

    def __init__(
        self,
        event_shape: Sequence[int],
        context_features: int = 0,
        *,
        channels: Sequence[int] = (32, 64),
        num_res_blocks: int = 1,
        time_features: int = 32,
        periodic: bool = False,
        max_frequency: float = 100.0,
        embedding_features: int = 128,
        groups: int = 8,
    ):
        super().__init__()
        try:
            shape = tuple(event_shape)
        except TypeError:
            shape = None
        if (
            shape is None
            or len(shape) not in (2, 3)
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in shape)
        ):
            raise ValueError(
                f"UNet needs event_shape = (C, H, W) (channels, height, width) or (H, W) (one channel), positive "
                f"integers; got {event_shape!r}"
            )
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"UNet needs at least one level and positive channels; got channels={channels}")
        if num_res_blocks < 1 or embedding_features < 1 or groups < 1 or context_features < 0:
            raise ValueError(
                "UNet needs num_res_blocks >= 1, embedding_features >= 1, groups >= 1 and context_features >= 0; "
                f"got {num_res_blocks}, {embedding_features}, {groups}, {context_features}"
            )
        shape = tuple(int(s) for s in shape)
        self.event_shape: tuple[int, ...] = shape
        self._chw: tuple[int, int, int] = (shape[0], shape[1], shape[2]) if len(shape) == 3 else (1, shape[0], shape[1])
        self.context_features = int(context_features)
        self.periodic = bool(periodic)
        self.config = {
            "event_shape": list(shape),
            "context_features": self.context_features,
            "channels": list(channels),
            "num_res_blocks": int(num_res_blocks),
            "time_features": int(time_features),
            "periodic": self.periodic,
            "max_frequency": float(max_frequency),
            "embedding_features": int(embedding_features),
            "groups": int(groups),
        }
        self._multiple = 2 ** (len(channels) - 1)
        E = embedding_features
        mode: _PaddingMode = "circular" if periodic else "zeros"

        self.time_embedding = SinusoidalEmbedding(time_features, 1.0, max_frequency)
        self.time_proj = nn.Sequential(nn.Linear(time_features, E), nn.SiLU(), nn.Linear(E, E))
        self.context_proj = (
            nn.Sequential(nn.Linear(context_features, E), nn.SiLU(), nn.Linear(E, E)) if context_features > 0 else None
        )

        def block(a: int, b: int) -> _ResBlock:
            return _ResBlock(a, b, E, groups, mode)

        C = self._chw[0]
        self.input = nn.Conv2d(C, channels[0], 3, padding=1, padding_mode=mode)
        self.down = nn.ModuleList()
        c = channels[0]
        for ch in channels:
            self.down.append(nn.ModuleList(block(c if k == 0 else ch, ch) for k in range(num_res_blocks)))
            c = ch
        self.middle = block(c, c)
        self.up = nn.ModuleList()
        self.to_finer = nn.ModuleList()
        for i in reversed(range(len(channels))):
            ch = channels[i]
            self.up.append(nn.ModuleList(block(c + ch if k == 0 else ch, ch) for k in range(num_res_blocks)))
            if i > 0:
                self.to_finer.append(nn.Conv2d(ch, channels[i - 1], 1))
                c = channels[i - 1]
        self.out_norm = _norm(channels[0], groups)
        self.output = nn.Conv2d(channels[0], C, 3, padding=1, padding_mode=mode)
        nn.init.zeros_(self.output.weight)
        assert self.output.bias is not None  # a Conv2d built with the default bias=True has one
        nn.init.zeros_(self.output.bias)

    def embed_context(self, context: Tensor | None) -> Tensor | None:
        """context ``(*B, context_features)`` -> its time-independent embedding ``(*B, E)``; None when
        ``context_features == 0``.

        Raises:
            ValueError: if the network has a context and ``context`` is None or has the wrong last size.
        """
        if self.context_proj is None:
            return None
        if context is None or context.shape[-1:] != (self.context_features,):
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"UNet expects a context of shape (*B, {self.context_features}); got {got}")
        return self.context_proj(context)

    def _pad(self, x: Tensor) -> Tensor:
        """Pad H and W up to multiples of 2**(levels-1) (circular if periodic, else reflect; zeros if too small)."""
        H, W = x.shape[-2:]
        ph, pw = -H % self._multiple, -W % self._multiple
        if ph == 0 and pw == 0:
            return x
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        if self.periodic:  # wrap-around indices: exact for any pad, even one larger than the field
            rows = torch.arange(-pad[2], H + pad[3], device=x.device) % H
            cols = torch.arange(-pad[0], W + pad[1], device=x.device) % W
            return x[..., rows[:, None], cols]
        if max(pad[0], pad[1]) < W and max(pad[2], pad[3]) < H:
            return F.pad(x, pad, mode="reflect")
        return F.pad(x, pad)

    def forward(self, x: Tensor, t: Tensor, context_embedding: Tensor | None = None) -> Tensor:
        """Evaluate f(x, t, c).

        Args:
            x: fields ``(*B, C, H, W)``.
            t: times, a scalar or any shape broadcastable to ``*B`` (e.g. ``(*B,)``).
            context_embedding: ``(*B, E)`` from :meth:`embed_context`, or broadcastable to it (e.g.
                ``(1, E)``); None when ``context_features == 0``.

        Returns:
            ``(*B, C, H, W)``.

        Raises:
            ValueError: if x does not end in ``event_shape``, or the context embedding is missing,
                unexpected or of the wrong size.
        """
        n = x.dim() - len(self.event_shape)
        if n < 0 or tuple(x.shape[n:]) != self.event_shape:
            raise ValueError(
                f"UNet expects x of shape (*B, {', '.join(map(str, self.event_shape))}); got {tuple(x.shape)}"
            )
        batch = x.shape[:n]
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        e = self.time_proj(self.time_embedding(t))
        if self.context_proj is not None:
            E = self.config["embedding_features"]
            if context_embedding is None or context_embedding.shape[-1:] != (E,):
                got = None if context_embedding is None else tuple(context_embedding.shape)
                raise ValueError(
                    f"this UNet has a context: pass context_embedding = net.embed_context(context) of shape (*B, {E}); got {got}"
                )
        elif context_embedding is not None:
            raise ValueError("this UNet has no context (context_features=0); pass context_embedding=None")
        try:
            if context_embedding is not None:
                e = e + context_embedding
            e = F.silu(e).expand(*batch, e.shape[-1]).reshape(-1, e.shape[-1])
        except RuntimeError as err:
            raise ValueError(
                f"t {tuple(t.shape)} and context_embedding {None if context_embedding is None else tuple(context_embedding.shape)} "
                f"must broadcast to the batch shape {tuple(batch)} of x {tuple(x.shape)}"
            ) from err

        H, W = self._chw[1:]
        h = self.input(self._pad(x.reshape(-1, *self._chw)))
        skips = []
        for i, level in enumerate(self.down):
            if i > 0:
                h = F.avg_pool2d(h, 2)
            for blk in cast(nn.ModuleList, level):  # self.down and self.up hold ModuleLists of _ResBlocks
                h = blk(h, e)
            skips.append(h)
        h = self.middle(h, e)
        for j, level in enumerate(self.up):
            if j > 0:
                h = F.interpolate(self.to_finer[j - 1](h), scale_factor=2.0, mode="nearest")
            h = torch.cat([h, skips.pop()], dim=1)
            for blk in cast(nn.ModuleList, level):  # self.down and self.up hold ModuleLists of _ResBlocks
                h = blk(h, e)
        out = self.output(F.silu(self.out_norm(h)))
        ph, pw = out.shape[-2] - H, out.shape[-1] - W
        out = out[..., ph // 2 : ph // 2 + H, pw // 2 : pw // 2 + W]
        return out.reshape(*batch, *self.event_shape)
