r"""A causal transformer over POVM outcomes, trained by maximum likelihood on measurement records, with the
classical and quantum fidelities of Carrasquilla et al. (Nat. Mach. Intell. 1, 155 (2019)).

The model is an exactly normalised autoregressive distribution over outcome strings ``a in {0..K-1}^N``,

    Q(a) = prod_t Q(a_t | a_<t),

with a start token, learned position embeddings, a pre-norm ``nn.TransformerEncoder`` under a causal mask
and a K-way softmax head. It is trained on the shots (Adam, cosine schedule, a held-out share choosing the
returned weights). Figures of merit against the exact state:

* classical fidelity ``F_c = (sum_a sqrt(P(a) Q(a)))^2 = (E_{a ~ Q} sqrt(P(a) / Q(a)))^2``, estimated
  from model samples with the exact ``P`` of each sample (:func:`classical_fidelity`; any N for GHZ);
* quantum fidelity of a pure target ``F_q = <psi|rho_Q|psi> = sum_a Q(a) <psi|Q_a1 x..x Q_aN|psi>``
  with the dual frame ``Q_a`` of :mod:`physgen.quantum.povm`, by enumerating all ``K^N`` outcomes
  (:func:`quantum_fidelity`; small N).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from physgen.quantum.povm import POVM, _as_dense, check_outcomes

__all__ = ["POVMTransformer", "fit_povm", "classical_fidelity", "dual_expectations", "quantum_fidelity"]


class POVMTransformer(nn.Module):
    """Autoregressive transformer ``Q(a)`` over N outcomes of a K-outcome POVM.

    Args:
        n_sites: N.
        K: outcomes per site.
        d_model, n_heads, n_layers, dim_ff: transformer size.
        seed: initialisation seed (None: torch's global generator).
    """

    def __init__(
        self,
        n_sites: int,
        K: int,
        *,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_ff: int = 64,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if n_sites < 1 or K < 2:
            raise ValueError(f"need n_sites >= 1 and K >= 2, got n_sites={n_sites}, K={K}.")
        self.n_sites, self.K = int(n_sites), int(K)
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.embed = nn.Embedding(K + 1, d_model)  # token K is the start token
            self.pos = nn.Parameter(0.02 * torch.randn(n_sites, d_model))
            layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_ff, dropout=0.0, batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, K)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(n_sites), persistent=False)
        self.config = {
            "type": "povm_transformer",
            "n_sites": n_sites,
            "K": K,
            "d_model": d_model,
            "n_heads": n_heads,
            "n_layers": n_layers,
            "dim_ff": dim_ff,
        }

    def logits(self, a: Tensor) -> Tensor:
        """``(B, N)`` outcomes -> ``(B, N, K)`` logits of ``Q(a_t | a_<t)`` (teacher forcing)."""
        start = torch.full_like(a[:, :1], self.K)
        h = self.embed(torch.cat([start, a[:, :-1]], 1)) + self.pos[: a.shape[1]]
        T = a.shape[1]
        causal: Tensor = self.causal  # type: ignore[assignment]
        h = self.encoder(h, mask=causal[:T, :T], is_causal=True)
        return self.head(self.norm(h))

    def log_prob(self, a: Tensor) -> Tensor:
        """Exactly normalised ``log Q(a)``: ``(B, N)`` long -> ``(B,)``."""
        a = a.long()
        lp = torch.log_softmax(self.logits(a), -1)
        return lp.gather(-1, a.unsqueeze(-1)).squeeze(-1).sum(-1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Exact ancestral samples ``(n, N)`` int64."""
        dev = self.pos.device
        a = torch.zeros(n, self.n_sites, dtype=torch.long, device=dev)
        for t in range(self.n_sites):
            p = torch.softmax(self.logits(a[:, : t + 1])[:, t], -1)
            a[:, t] = torch.multinomial(p, 1, generator=generator).squeeze(1)
        return a


def fit_povm(
    model: POVMTransformer,
    outcomes,
    povm: POVM,
    *,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 3e-3,
    validation_fraction: float = 0.1,
    generator: torch.Generator | None = None,
    callback: Callable[[int, float, float], None] | None = None,
    time_limit_s: float | None = None,
) -> dict:
    """Maximum-likelihood fit of ``model`` to a POVM measurement record ``(n, N)``.

    Adam with a cosine decay to 1 % over the run; ``validation_fraction`` of the shots is held out and the
    weights with the lowest held-out NLL are kept (loaded into ``model`` at the end).

    Returns:
        ``{"train_nll", "val_nll", "best_epoch", "epochs", "time_s"}``.

    Raises:
        ValueError: a record with an outcome outside the POVM's alphabet (naming the shot and site), or of
            the wrong width.
    """
    a = torch.as_tensor(check_outcomes(outcomes, povm, model.n_sites))
    if model.K != povm.K:
        raise ValueError(f"the model has K={model.K} outcomes per site but the {povm.name} POVM has {povm.K}.")
    n = len(a)
    if n < 2:
        raise ValueError("need at least 2 shots.")
    perm = torch.randperm(n, generator=generator)
    n_val = min(max(1, round(validation_fraction * n)), n - 1)
    val, train = a[perm[:n_val]], a[perm[n_val:]]
    dev = model.pos.device
    val, train = val.to(dev), train.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    best, best_state, best_epoch, t0 = math.inf, None, -1, time.perf_counter()
    tr = float("nan")
    for ep in range(epochs):
        order = torch.randperm(len(train), generator=generator).to(dev)
        tot = 0.0
        model.train()
        for k in range(0, len(train), batch_size):
            batch = train[order[k : k + batch_size]]
            loss = -model.log_prob(batch).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(batch)
        tr = tot / len(train)
        model.eval()
        with torch.no_grad():
            vl = float(-model.log_prob(val).mean())
        if vl < best:
            best, best_epoch, best_state = vl, ep, copy.deepcopy(model.state_dict())
        if callback is not None:
            callback(ep, tr, vl)
        if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return {
        "train_nll": tr,
        "val_nll": best,
        "best_epoch": best_epoch,
        "epochs": ep + 1,
        "time_s": time.perf_counter() - t0,
    }


@torch.no_grad()
def classical_fidelity(
    model: POVMTransformer,
    exact_probability: Callable[[np.ndarray], np.ndarray],
    n_samples: int = 20000,
    *,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Monte Carlo ``F_c = (E_{a~Q} sqrt(P(a)/Q(a)))^2`` and its standard error.

    Args:
        exact_probability: ``(n, N)`` int64 outcomes -> ``(n,)`` exact ``P(a)`` (e.g.
            ``lambda a: ghz_povm_probability(N, povm, a)``).
    """
    a = model.sample(n_samples, generator=generator)
    q = model.log_prob(a).double().cpu().numpy()
    p = np.asarray(exact_probability(a.cpu().numpy()), dtype=np.float64)
    r = np.sqrt(p) * np.exp(-0.5 * q)
    m, se = float(r.mean()), float(r.std(ddof=1) / math.sqrt(len(r)))
    return m**2, 2 * m * se


def dual_expectations(psi, povm: POVM) -> np.ndarray:
    """``<psi|Q_a1 x .. x Q_aN|psi>`` for all ``K^N`` outcome strings: ``(K,)*N`` real (small N)."""
    v, n = _as_dense(psi)
    if povm.K**n > 2**22:
        raise ValueError(f"{povm.K}**{n} outcomes are too many to enumerate.")
    t = np.multiply.outer(v.conj(), v).reshape((2,) * (2 * n))  # axes (s_1..s_N, s'_1..s'_N) of psi*(s) psi(s')
    for i in range(n):  # axes: (s_i..s_N, s'_i..s'_N, a_1..a_{i-1}); contract s_i, s'_i with Q_a[s_i, s'_i]
        t = np.tensordot(t, povm.duals, axes=([0, n - i], [1, 2]))  # the new outcome axis a_i goes last
    return np.real(t)


@torch.no_grad()
def quantum_fidelity(model: POVMTransformer, psi, povm: POVM, *, chunk: int = 65536) -> float:
    """``F_q = sum_a Q(a) <psi|Q_a|psi>`` by enumerating all ``K^N`` outcome strings (small N)."""
    n = model.n_sites
    q = dual_expectations(psi, povm).reshape(-1)
    grids = np.indices((povm.K,) * n).reshape(n, -1).T  # (K^N, N) in C order, matching q
    tot = 0.0
    for s in range(0, len(grids), chunk):
        a = torch.as_tensor(grids[s : s + chunk], device=model.pos.device)
        lq = model.log_prob(a).double().cpu().numpy()
        tot += float(np.sum(np.exp(lq) * q[s : s + chunk]))
    return tot
