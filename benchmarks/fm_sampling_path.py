"""Flow-matching sampling: the folded network path of ``FlowMatching.sample`` vs the plain forward pass.

For one observation on a fixed-step grid, ``FlowMatching.sample`` runs the network with each solver time's
conditioning folded into the weights (``physgen.nn.ResidualMLP.frozen``). This script times it against the
same solver integrating the public ``FlowMatching.vector_field`` (the plain forward pass, which also embeds
the context at every call; sample's own plain path, used for several observations, embeds it once), on untrained
networks with random weights (the cost does not depend on the weights), 1,024 rows per call as
``Posterior.sample`` uses, one thread, and checks that both give the same samples.

    python benchmarks/fm_sampling_path.py

Ends with ``RESULT {json}``.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median_time, result_line

from physgen.models import build_model
from physgen.models._ode import odeint


def rates(draws, rows: int, calls: int = 20, repeats: int = 7) -> list[float]:
    """samples/s of each draw function (``calls`` draws of ``rows``), timed in turn within every repeat so that
    a drift of the machine's speed hits all of them alike; medians over the repeats."""
    times: list[list[float]] = [[] for _ in draws]
    for _ in range(repeats):
        for k, draw in enumerate(draws):
            times[k].append(median_time(lambda draw=draw: [draw() for _ in range(calls)], repeats=1))
    return [rows * calls / statistics.median(t) for t in times]


def main() -> None:
    torch.set_num_threads(1)
    rows, out = 1024, {}
    for name in ("flow_matching_fast", "flow_matching"):
        torch.manual_seed(0)
        m = build_model(name, 2, 2).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.normal_(0, 0.1)
        m.gaussian.fit(torch.randn(500, 2) * 0.3 + 1, torch.randn(500, 2))
        cfg = m.config
        ctx = torch.tensor([[0.3, -0.2]])

        def folded(m=m, ctx=ctx) -> torch.Tensor:
            return m.sample((rows,), ctx, generator=torch.Generator().manual_seed(0))

        def plain(m=m, ctx=ctx, cfg=cfg) -> torch.Tensor:
            x = torch.randn((rows, 1, 2), generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                return odeint(lambda t, y: m.vector_field(y, t, ctx), x, 0.0, 1.0, method=cfg["solver"],
                              steps=cfg["steps"], power=cfg["step_power"])

        diff = (folded().reshape(rows, 2) - plain().reshape(rows, 2)).abs().max().item()
        a, b = rates([folded, plain], rows)
        out[name] = {"folded_samples_per_s": a, "plain_samples_per_s": b, "speedup": a / b, "max_abs_diff": diff}
        print(f"{name:20s} {cfg['solver']} {cfg['steps']} steps, width {cfg['hidden_features']}: folded {a:9.0f} "
              f"samples/s, plain {b:9.0f} samples/s, {a / b:.2f}x; max |difference| {diff:.1e}", flush=True)
    print(result_line({"benchmark": "fm_sampling_path", "rows_per_call": rows, "runs": out, "machine": machine()}))


if __name__ == "__main__":
    main()
