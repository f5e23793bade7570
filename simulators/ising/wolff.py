r"""Wolff cluster updates (Wolff 1989) for a batch of periodic L×L Ising lattices, on bit-packed rows.

Algorithm. Bonds between aligned neighbours are activated with p_add = 1 - e^{-2βJ}, and the
cluster is the connected component of a uniformly chosen seed site in the graph of active bonds.
Drawing every bond up front gives exactly the distribution of the sequential construction (each
bond is tested at most once in either case). The component is found by flood fill: repeated
one-step dilation along active bonds, all lattices at once, until no lattice grows. With a field h
the flip is accepted with probability min(1, e^{-2βh M_C}), M_C = Σ_{i∈C} s_i (a Metropolis test on
the cluster move), which keeps detailed balance. Conventions as in :mod:`simulators.ising.exact`.

Layout. Spins are stored as bits σ = (s + 1)/2, each lattice row split into K = ⌈L / 62⌉ int64
words of W bits (W = L when L <= 62, else 62; the last word holds the remaining L - (K - 1)W bits):
bit b of ``words[m, i, k]`` is the spin of site (i, kW + b). Bits above a word's width are always 0,
so the sign bit stays clear. A dilation step is a dozen word operations per row.

Row rotations are periodic in L bits, carried across the words of a row: ``_rotr(x)`` has the bit of
column j at column j - 1 (mod L), ``_rotl(x)`` at column j + 1. Bond activations are drawn as one
int32 per bond (two per 64-bit draw) in the site layout, so the random numbers consumed, and the
clusters built, do not depend on the word width.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

__all__ = ["pack_rows", "unpack_rows", "packed_sums", "wolff_step"]

_WORD_BITS = 62  # bits per int64 word; rows longer than this span several words

_NUMPY_ON_CPU = True  # numpy flood fill / popcount on CPU tensors; the torch path serves other devices


class _Layout:
    """Word width W, words per row K, per-word widths and masks for rows of L bits (device arrays)."""

    def __init__(self, L: int, device: torch.device, word_bits: int):
        self.L = L
        self.W = L if L <= word_bits else word_bits
        self.K = -(-L // self.W)
        widths = [self.W] * (self.K - 1) + [L - (self.K - 1) * self.W]
        self.widths = widths
        self.mask_t = torch.tensor([(1 << w) - 1 for w in widths], dtype=torch.int64, device=device)
        self.up_t = torch.tensor([w - 1 for w in widths], dtype=torch.int64, device=device)  # top bit of word k
        self.prev_up_t = torch.roll(self.up_t, 1)  # top bit of word k - 1
        self.mask_n: int | np.ndarray  # numpy twins of the three tensors (scalars for a one-word row)
        self.up_n: int | np.ndarray
        self.prev_up_n: int | np.ndarray
        if self.K == 1:  # scalars: numpy/torch broadcast them fastest
            self.mask_n, self.up_n, self.prev_up_n = (1 << L) - 1, L - 1, L - 1
        else:
            self.mask_n = self.mask_t.cpu().numpy()
            self.up_n, self.prev_up_n = self.up_t.cpu().numpy(), self.prev_up_t.cpu().numpy()


@functools.cache
def _cached_layout(L: int, device: torch.device, word_bits: int) -> _Layout:
    return _Layout(L, device, word_bits)


def _layout_of(L: int, device: torch.device) -> _Layout:
    """The layout of rows of L bits on ``device`` (cached)."""
    return _cached_layout(L, device, _WORD_BITS)


def _layout(words: Tensor) -> _Layout:
    """The layout of ``(M, L, K)`` words."""
    return _layout_of(words.shape[-2], words.device)


def pack_rows(bits: Tensor) -> Tensor:
    """``bits: (M, L, L)`` in {0, 1} (any integer/bool dtype) -> ``(M, L, K)`` int64 words."""
    m, L = bits.shape[0], bits.shape[-1]
    lay = _layout_of(L, bits.device)
    b = bits.to(torch.int64)
    pad = lay.K * lay.W - L
    if pad:
        b = torch.cat([b, b.new_zeros(m, L, pad)], -1)
    weights = torch.ones(lay.W, dtype=torch.int64, device=bits.device) << torch.arange(lay.W, device=bits.device)
    return (b.view(m, L, lay.K, lay.W) * weights).sum(-1)


def unpack_rows(words: Tensor) -> Tensor:
    """``(M, L, K)`` int64 words -> ``(M, L, L)`` int8 bits."""
    m, L, K = words.shape
    lay = _layout_of(L, words.device)
    bits = (words.unsqueeze(-1) >> torch.arange(lay.W, device=words.device)) & 1
    return bits.reshape(m, L, K * lay.W)[..., :L].to(torch.int8)


def _popcount(words: Tensor) -> Tensor:
    """Number of set bits per lattice: ``(M, L, K)`` -> ``(M,)`` int64."""
    if _NUMPY_ON_CPU and words.device.type == "cpu" and hasattr(np, "bitwise_count"):
        return torch.from_numpy(np.bitwise_count(words.numpy()).sum((-2, -1), dtype=np.int64))
    return ((words.unsqueeze(-1) >> torch.arange(63, device=words.device)) & 1).sum((-3, -2, -1))


def _pack_bool_numpy(b: np.ndarray, lay: _Layout) -> np.ndarray:
    """Pack the last axis (L columns) of a bool array ``(..., L)`` into ``(..., K)`` int64 words."""
    pad = lay.K * lay.W - lay.L
    if pad:
        b = np.concatenate([b, np.zeros(b.shape[:-1] + (pad,), dtype=bool)], -1)
    by = np.packbits(b.reshape(b.shape[:-1] + (lay.K, lay.W)), axis=-1, bitorder="little")
    out = np.zeros(by.shape[:-1] + (8,), dtype=np.uint8)
    out[..., : by.shape[-1]] = by
    return out.view("<u8")[..., 0].astype(np.int64)


def _rotr(x: Tensor, lay: _Layout) -> Tensor:
    """Column j -> j - 1 (mod L): each word shifts down, taking bit 0 of the next word on top."""
    nxt = x if lay.K == 1 else torch.roll(x, -1, -1)
    return ((x >> 1) | (nxt << lay.up_t)) & lay.mask_t


def _rotl(x: Tensor, lay: _Layout) -> Tensor:
    """Column j -> j + 1 (mod L): each word shifts up, taking the top bit of the previous word."""
    prv = x if lay.K == 1 else torch.roll(x, 1, -1)
    return ((x << 1) & lay.mask_t) | (prv >> lay.prev_up_t)


def packed_sums(words: Tensor) -> tuple[Tensor, Tensor]:
    """Bond sum Σ_<ij> s_i s_j and magnetisation Σ s_i per lattice: ``(M, L, K)`` -> ``(M,)`` int64 each."""
    lay = _layout(words)
    unequal = _popcount(words ^ _rotr(words, lay)) + _popcount(words ^ torch.roll(words, -1, -2))
    n = lay.L * lay.L
    return 2 * n - 2 * unequal, 2 * _popcount(words) - n


def _flood_numpy(c: np.ndarray, br: np.ndarray, bd: np.ndarray, bu: np.ndarray, lay: _Layout) -> np.ndarray:
    """The flood fill of :func:`wolff_step` on CPU with numpy (its per-operation overhead is far
    below torch's, and the word arrays are small)."""
    shape, multi = c.shape, lay.K > 1
    if not multi:  # one word per row: 2-d arrays keep numpy's inner loops long
        c, br, bd, bu = (a.reshape(shape[:2]) for a in (c, br, bd, bu))
    c = c.copy()
    t1, t2, nb = np.empty_like(c), np.empty_like(c), np.empty_like(c)
    up, prev_up, mask = lay.up_n, lay.prev_up_n, lay.mask_n
    while True:
        # horizontal: column j joins from j + 1 (rotr(c) & br) and from j - 1 (rotl(c & br));
        # bits that leave a word are cut by br (left) or by the mask (right)
        if multi:  # the next word's bit 0 comes in on top
            t2[..., :-1] = c[..., 1:]
            t2[..., -1] = c[..., 0]
            t2 <<= up
        else:
            np.left_shift(c, up, out=t2)
        np.right_shift(c, 1, out=t1)
        t1 |= t2
        t1 &= br
        np.bitwise_and(c, br, out=nb)
        if multi:  # the previous word's top bit comes in at bit 0
            t2[..., 1:] = nb[..., :-1]
            t2[..., 0] = nb[..., -1]
            t2 >>= prev_up
        else:
            np.right_shift(nb, prev_up, out=t2)
        nb <<= 1
        t2 |= nb
        t1 |= t2
        # vertical: row i joins from row i + 1 (bond bd[i]) and from row i - 1 (bond bu[i])
        nb[:, :-1] = c[:, 1:]
        nb[:, -1] = c[:, 0]
        nb &= bd
        t1 |= nb
        nb[:, 1:] = c[:, :-1]
        nb[:, 0] = c[:, -1]
        nb &= bu
        t1 |= nb
        t1 &= mask
        t1 |= c
        if np.array_equal(t1, c):
            return c.reshape(shape)
        c, t1 = t1, c


def _flood_torch(c: Tensor, br: Tensor, bd: Tensor, bu: Tensor, lay: _Layout) -> Tensor:
    """The same flood fill with torch operations (any device)."""
    while True:
        grow = (_rotr(c, lay) & br) | _rotl(c & br, lay) | (torch.roll(c, -1, -2) & bd) | (torch.roll(c, 1, -2) & bu)
        new = c | grow
        if torch.equal(new, c):
            return c
        c = new


def wolff_step(
    words: Tensor,
    beta: Tensor,
    J: Tensor,
    h: Tensor,
    *,
    active: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One Wolff cluster update per lattice on bit-packed rows, in place.

    Args:
        words: int64 ``(M, L, K)`` from :func:`pack_rows` (modified in place).
        beta, J, h: ``(M,)``; J > 0.
        active: optional bool ``(M,)``; lattices marked False are left unchanged.
        generator: torch generator on the words' device.

    Returns:
        ``(M,)`` int64 size of the cluster built on each lattice (flipped unless the field rejected
        the move or the lattice is inactive).
    """
    m, L, K = words.shape
    lay = _layout(words)
    dev = words.device
    p_add = -torch.expm1(-2.0 * beta.to(torch.float64) * J.to(torch.float64))
    # bond activation: uniform int32 (two per 64-bit draw) below a threshold, exact to 2^-32
    thr = (torch.floor(p_add * 2.0**32) - 2.0**31).clamp(-(2.0**31), 2.0**31 - 1).to(torch.int32).view(1, m, 1, 1)
    rbuf = torch.empty(m * L * L, dtype=torch.int64, device=dev).random_(-(2**63), None, generator=generator)
    act = rbuf.view(torch.int32).view(2, m, L, L) < thr
    on_cpu = _NUMPY_ON_CPU and dev.type == "cpu"
    act_r, act_d = (
        torch.from_numpy(_pack_bool_numpy(act.numpy(), lay))
        if on_cpu
        else pack_rows(act.view(2 * m, L, L)).view(2, m, L, K)
    )
    br = ~(words ^ _rotr(words, lay)) & lay.mask_t & act_r  # bond (i, j)-(i, j+1)
    bd = ~(words ^ torch.roll(words, -1, -2)) & lay.mask_t & act_d  # bond (i, j)-(i+1, j)
    bu = torch.roll(bd, 1, -2)  # bond (i, j)-(i-1, j)
    seed = torch.randint(0, L * L, (m,), generator=generator, device=dev)
    row, col = seed // L, seed % L
    c = torch.zeros_like(words)
    c[torch.arange(m, device=dev), row, col // lay.W] = torch.ones(m, dtype=torch.int64, device=dev) << (col % lay.W)
    if on_cpu:
        c = torch.from_numpy(_flood_numpy(c.numpy(), br.numpy(), bd.numpy(), bu.numpy(), lay))
    else:
        c = _flood_torch(c, br, bd, bu, lay)
    size = _popcount(c)
    ok = torch.ones(m, dtype=torch.bool, device=dev) if active is None else active.clone()
    if bool((h != 0).any()):
        mc = (2 * _popcount(c & words) - size).to(torch.float64)  # Σ_{i in C} s_i
        p_acc = torch.exp(torch.clamp(-2.0 * beta.to(torch.float64) * h.to(torch.float64) * mc, max=0.0))
        ok &= torch.rand((m,), generator=generator, device=dev, dtype=torch.float64) < p_acc
    words ^= c * ok.to(torch.int64).view(m, 1, 1)
    return size
