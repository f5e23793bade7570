"""Multilayer perceptrons: a plain MLP, a residual MLP conditioned on time and context, and
an MLP encoder for vector observations.

Residual block (pre-activation, conditioned on a vector e), ``conditioning="add"``:

    h <- h + W_2 · SiLU(W_1 · SiLU(LN(h)) + U e),

or ``conditioning="film"`` (feature-wise scale and shift, Perez et al. 2018; [a, b] = U e):

    h <- h + W_2 · SiLU((1 + a) ⊙ W_1 · SiLU(LN(h)) + b),

where e = SiLU(A(context) + B(time embedding)). FiLM costs one more (H x H) product per block in
training but almost nothing in sampling, where e is one row per solver step and observation (its effect
on accuracy: docs/flow_matching_diffusion.md). The context part A(context) does not depend
on time, so ODE/SDE samplers compute it once per call (:meth:`ResidualMLP.embed_context`)
and reuse it at every solver step. The last layer is initialised to zero so that an untrained
network outputs 0 (a well-conditioned start for vector fields and denoisers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from physgen.nn.embeddings import SinusoidalEmbedding

__all__ = ["MLP", "ResidualMLP", "MLPEncoder"]


class MLP(nn.Sequential):
    """Linear -> SiLU -> ... -> Linear.

    Args:
        in_features: input size.
        out_features: output size.
        hidden_features: hidden layer sizes.
    """

    def __init__(self, in_features: int, out_features: int, hidden_features: Sequence[int] = (64, 64)):
        sizes = [in_features, *hidden_features, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.SiLU())
        super().__init__(*layers)


_CONDITIONING = ("add", "film")


class _Block(nn.Module):
    def __init__(self, hidden: int, cond: int, film: bool = False):
        super().__init__()
        self.hidden, self.film = hidden, film
        self.norm = nn.LayerNorm(hidden)
        self.lin1 = nn.Linear(hidden, hidden)
        self.cond = nn.Linear(cond, 2 * hidden if film else hidden)
        self.lin2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        u = self.lin1(self.act(self.norm(h)))
        if self.film:
            scale, shift = self.cond(e).split(self.hidden, dim=-1)
            u = u * (1.0 + scale) + shift
        else:
            u = u + self.cond(e)
        return h + self.lin2(self.act(u))

    def folded(self, e: Tensor) -> tuple[Tensor, Tensor]:
        """lin1 with the conditioning of K vectors e ``(K, H)`` folded in: weights ``(K, H, H)`` and biases
        ``(K, H)`` such that ``addmm(bias[k], a, weight[k].T)`` is the conditioned ``u`` of :meth:`forward`."""
        w, b = self.lin1.weight.unsqueeze(0), self.lin1.bias
        if not self.film:
            return w.expand(e.shape[0], -1, -1), b + self.cond(e)
        scale, shift = self.cond(e).split(self.hidden, dim=-1)
        g = 1.0 + scale
        return w * g.unsqueeze(-1), b * g + shift


class ResidualMLP(nn.Module):
    """Residual MLP f(x, t, c) with a sinusoidal time embedding and a context embedding: the
    :class:`physgen.core.Network` of vector-field and denoiser families on vector targets
    (``in_features == out_features == D``, ``event_shape = (D,)``).

    Args:
        in_features: size of x.
        out_features: output size.
        context_features: size of c (0 = no context).
        hidden_features: width of the residual stream.
        num_blocks: number of residual blocks.
        time_features: size of the sinusoidal time embedding.
        max_frequency: highest frequency of the time embedding.
        conditioning: how e enters each block: "add" (a shift) or "film" (a scale and a shift).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        context_features: int = 0,
        *,
        hidden_features: int = 128,
        num_blocks: int = 3,
        time_features: int = 32,
        max_frequency: float = 100.0,
        conditioning: str = "add",
    ):
        super().__init__()
        if num_blocks < 1 or hidden_features < 1:
            raise ValueError(
                f"ResidualMLP needs num_blocks >= 1 and hidden_features >= 1; got {num_blocks}, {hidden_features}"
            )
        if conditioning not in _CONDITIONING:
            raise ValueError(f"conditioning must be one of {_CONDITIONING}; got {conditioning!r}")
        self.in_features, self.out_features, self.context_features = in_features, out_features, context_features
        self.name = "residual_mlp"
        self.config = {
            "in_features": in_features,
            "out_features": out_features,
            "context_features": context_features,
            "hidden_features": hidden_features,
            "num_blocks": num_blocks,
            "time_features": time_features,
            "max_frequency": max_frequency,
            "conditioning": conditioning,
        }
        h = hidden_features
        self.time_embedding = SinusoidalEmbedding(time_features, 1.0, max_frequency)
        self.time_proj = nn.Sequential(nn.Linear(time_features, h), nn.SiLU(), nn.Linear(h, h))
        self.context_proj = (
            nn.Sequential(nn.Linear(context_features, h), nn.SiLU(), nn.Linear(h, h)) if context_features > 0 else None
        )
        self.input = nn.Linear(in_features, h)
        self.blocks = nn.ModuleList(_Block(h, h, conditioning == "film") for _ in range(num_blocks))
        self.out_norm = nn.LayerNorm(h)
        self.output = nn.Linear(h, out_features)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    @property
    def event_shape(self) -> tuple[int, ...]:
        """``(D,)``: the shape this network maps onto itself (vector-field role)."""
        if self.in_features != self.out_features:
            raise AttributeError(
                f"a ResidualMLP {self.in_features} -> {self.out_features} maps no event shape onto itself"
            )
        return (self.in_features,)

    def embed_context(self, context: Tensor | None) -> Tensor | None:
        """context ``(*B, C)`` -> its time-independent embedding ``(*B, H)`` (None if C == 0)."""
        if self.context_proj is None:
            return None
        return self.context_proj(context)

    def _conditioning(self, t: Tensor, context_embedding: Tensor | None) -> Tensor:
        """e = SiLU(B(time embedding of t) + context embedding), broadcast: t ``(*B,)`` -> ``(*B, H)``."""
        e = self.time_proj(self.time_embedding(t))
        if self.context_proj is not None:
            e = e + context_embedding
        return torch.nn.functional.silu(e)

    def forward(self, x: Tensor, t: Tensor, context_embedding: Tensor | None = None) -> Tensor:
        """x ``(*B, in)``, t ``(*B,)`` or scalar, ``context_embedding`` ``(*B, H)`` from :meth:`embed_context`
        (broadcast; None when C == 0) -> ``(*B, out)``."""
        if self.context_proj is not None and context_embedding is None:
            raise ValueError("this ResidualMLP has a context: pass context_embedding = net.embed_context(context)")
        e = self._conditioning(t, context_embedding)
        h = self.input(x)
        for block in self.blocks:
            h = block(h, e)
        return self.output(torch.nn.functional.silu(self.out_norm(h)))

    def frozen(self, t: Tensor, context_embedding: Tensor | None = None) -> list[Callable[[Tensor], Tensor]]:
        """The network at given times and one context, as functions of x alone (for ODE solver steps).

        The conditioning is folded into each block's first weight matrix, so a call costs one matrix
        product per layer and no per-row conditioning work; it equals :meth:`forward` up to rounding.

        Args:
            t: times ``(K,)``.
            context_embedding: ``(H,)`` from :meth:`embed_context` of one context (None if C == 0).

        Returns:
            K functions ``x (N, in) -> (N, out)``, one per time.
        """
        F = torch.nn.functional
        if self.context_proj is not None and context_embedding is None:
            raise ValueError("this ResidualMLP has a context; pass its context_embedding")
        e = self._conditioning(t.reshape(-1), None if context_embedding is None else context_embedding.reshape(1, -1))
        blocks = cast(list[_Block], list(self.blocks))  # self.blocks holds _Block modules only
        folded = [b.folded(e) for b in blocks]
        inp, out, out_norm = self.input, self.output, self.out_norm

        def at(k: int) -> Callable[[Tensor], Tensor]:
            layers = [(b.norm, w[k].t(), c[k], b.lin2.weight.t(), b.lin2.bias) for b, (w, c) in zip(blocks, folded)]

            def f(x: Tensor) -> Tensor:
                h = torch.addmm(inp.bias, x, inp.weight.t())
                for norm, w1, b1, w2, b2 in layers:
                    u = F.silu(torch.addmm(b1, F.silu(norm(h)), w1), inplace=True)
                    h = torch.addmm(h, u, w2).add_(b2)
                return torch.addmm(out.bias, F.silu(out_norm(h), inplace=True), out.weight.t())

            return f

        return [at(k) for k in range(e.shape[0])]


class MLPEncoder(nn.Module):
    """Summary network for vector observations: an MLP ``(*B, F) -> (*B, E)``.

    Posterior standardises x per feature before it reaches this encoder.

    Args:
        in_features: F.
        out_features: E.
        hidden_features: hidden layer sizes.
    """

    x_standardization = "feature"

    def __init__(self, in_features: int, out_features: int = 32, hidden_features: Sequence[int] = (64, 64)):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"MLPEncoder needs in_features, out_features >= 1; got {in_features}, {out_features}")
        self.name = "mlp"
        self.in_features, self.out_features = in_features, out_features
        self.config = {
            "in_features": in_features,
            "out_features": out_features,
            "hidden_features": list(hidden_features),
        }
        self.net = MLP(in_features, out_features, hidden_features)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x ``(*B, F)`` -> ``(*B, E)``. ``mask`` is not used (accepted for the Encoder protocol)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MLPEncoder expects x of shape (*B, {self.in_features}); got {tuple(x.shape)}")
        return self.net(x)
