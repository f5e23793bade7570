"""Weight averaging: torch.optim.swa_utils vs the hand-written moving average fit() used before.

All three keep an exponential moving average of a module's parameters, updated after every optimiser step:

* ``hand``: the ``_WeightAverage`` class of physgen/train.py before the train/ package (kept here
  verbatim as the peer): one ``torch._foreach_lerp_`` over the trainable parameters;
* ``swa_plain``: swa_utils as its documentation shows it, ``AveragedModel(module,
  multi_avg_fn=get_ema_multi_avg_fn(d))`` and ``update_parameters(module)`` at every step;
* ``swa`` (what :class:`physgen.train.ema.WeightAverage` does): the average held in an ``AveragedModel``,
  updated by swa_utils' ``get_ema_multi_avg_fn(d_t)`` on parameter lists grouped once (fit's warm-up decay).

The module is the NPE default, physgen's NSF flow (5 coupling spline transforms of [128, 128],
two-moons sizes: D = 2, context 2), trained with AdamW at batch 512 on one CPU thread (fit's setting
for small models), decay 0.999 (the flow's default). Printed: the time of one averaging update and
of one whole training step (loss, backward, step, update) for each, their ratios, the machine and the
date. Medians over ``--repeats`` runs of ``--steps`` steps.

    .venv/bin/python benchmarks/ema_swa.py [--steps 300] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, result_line
from physgen.train.ema import WeightAverage


class HandWrittenAverage:
    """physgen's former ``_WeightAverage`` (verbatim but for the name)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay, self.steps = decay, 0
        named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.params = [p.detach() for _, p in named]
        self.shadow = [p.clone() for p in self.params]

    def update(self) -> None:
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        self.steps += 1
        torch._foreach_lerp_(self.shadow, self.params, 1.0 - d)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        live = [p.clone() for p in self.params]
        torch._foreach_copy_(self.params, self.shadow)
        try:
            yield
        finally:
            torch._foreach_copy_(self.params, live)


class PlainSwaUtils:
    """swa_utils as documented: AveragedModel + get_ema_multi_avg_fn (fixed decay, no warm-up)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.module = module
        self.avg = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay))

    def update(self) -> None:
        self.avg.update_parameters(self.module)


def _flow(device: torch.device) -> nn.Module:
    from physgen.models.flow import Flow

    return Flow(2, 2).to(device)


def _data(n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    theta = x + 0.1 * torch.randn(n, 2, generator=g)
    return theta.to(device), x.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_updates(kind: str, steps: int, device: torch.device) -> float:
    """Seconds per averaging update alone (the module's weights change in between, as in training)."""
    torch.manual_seed(0)
    module = _flow(device)
    avg = {"hand": HandWrittenAverage, "swa": WeightAverage, "swa_plain": PlainSwaUtils}[kind](module, 0.999)
    params = [p for p in module.parameters()]
    with torch.no_grad():
        for _ in range(10):
            torch._foreach_add_(params, 1e-6)
            avg.update()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            torch._foreach_add_(params, 1e-6)
            avg.update()
        _sync(device)
    return (time.perf_counter() - t0) / steps


def time_steps(kind: str, steps: int, device: torch.device, batch: int = 512) -> float:
    """Seconds per training step (loss, backward, AdamW step, averaging update)."""
    torch.manual_seed(0)
    module = _flow(device)
    theta, x = _data(steps * batch, device)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3, fused=True)
    avg = {"none": None, "hand": HandWrittenAverage, "swa": WeightAverage, "swa_plain": PlainSwaUtils}[kind]
    avg = avg(module, 0.999) if avg is not None else None

    def step(i: int) -> None:
        loss = module.loss(theta[i * batch:(i + 1) * batch], x[i * batch:(i + 1) * batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if avg is not None:
            avg.update()

    for i in range(5):
        step(i)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    _sync(device)
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(machine())
    n_params = sum(p.numel() for p in _flow(dev).parameters())
    print(f"module: physgen NSF flow (two-moons sizes), {n_params} parameters; device {dev}; batch 512")
    figures: dict = {"parameters": n_params, "device": str(dev)}
    upd = {k: [] for k in ("hand", "swa", "swa_plain")}
    stp = {k: [] for k in ("none", "hand", "swa", "swa_plain")}
    for _ in range(args.repeats):  # interleaved, so that drifting machine load hits every variant alike
        for k in upd:
            upd[k].append(time_updates(k, 20 * args.steps, dev))
        for k in stp:
            stp[k].append(time_steps(k, args.steps, dev))
    for k, v in upd.items():
        figures[f"update_us_{k}"] = 1e6 * statistics.median(v)
    for k, v in stp.items():
        figures[f"step_ms_{k}"] = 1e3 * statistics.median(v)
    figures["update_ratio_swa_over_hand"] = figures["update_us_swa"] / figures["update_us_hand"]
    figures["update_ratio_swa_plain_over_hand"] = figures["update_us_swa_plain"] / figures["update_us_hand"]
    figures["step_ratio_swa_over_hand"] = figures["step_ms_swa"] / figures["step_ms_hand"]
    figures["step_ratio_swa_plain_over_hand"] = figures["step_ms_swa_plain"] / figures["step_ms_hand"]
    for k in ("swa", "swa_plain"):
        figures[f"step_overhead_{k}_vs_hand"] = (figures[f"update_us_{k}"] - figures["update_us_hand"]) / (
            1e3 * figures["step_ms_none"])
    print(f"one update:  hand-written {figures['update_us_hand']:.1f} us, swa_utils (fit's) "
          f"{figures['update_us_swa']:.1f} us, swa_utils plain {figures['update_us_swa_plain']:.1f} us; "
          f"ratio swa/hand {figures['update_ratio_swa_over_hand']:.2f} (plain {figures['update_ratio_swa_plain_over_hand']:.2f})")
    print(f"one training step: no average {figures['step_ms_none']:.3f} ms, hand-written {figures['step_ms_hand']:.3f} ms, "
          f"swa_utils (fit's) {figures['step_ms_swa']:.3f} ms, plain {figures['step_ms_swa_plain']:.3f} ms; "
          f"ratio swa/hand {figures['step_ratio_swa_over_hand']:.3f} (plain {figures['step_ratio_swa_plain_over_hand']:.3f})")
    print(f"extra time per training step from the update alone (update difference / step without average): "
          f"swa {100 * figures['step_overhead_swa_vs_hand']:+.2f}%, plain {100 * figures['step_overhead_swa_plain_vs_hand']:+.2f}%")
    print(result_line(figures))
    return figures


if __name__ == "__main__":
    main()
