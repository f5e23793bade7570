"""physgen's hand-written numerics vs zuko's: the coupling spline and the ODE solvers, same weights, one run.

1. Coupling spline. The default NSF (``build_model("nsf", 2, 2)``: linear-Gaussian layer, 5 coupling
   rational-quadratic splines of [128, 128], 10 bins, LU mixing) as physgen builds it, with
   ``physgen.models._coupling.SplineCoupling``, against the same flow with every coupling layer replaced by
   zuko's ``GeneralCouplingTransform`` + ``MonotonicRQSTransform`` (zuko alone) and, to split the gain,
   by zuko's coupling with physgen's spline knots ``physgen.models.flow._RQS``. The zuko layers load the
   physgen layers' state dicts (the same keys), so all three hold the same weights; the script checks that
   they give the same log_prob and samples in float64, then times the training loss (mean -log_prob,
   forward + backward) on a batch of 512 two-moons rows (θ given x) and drawing 10,000 samples for one x.

2. ODE solvers. A flow-matching model (``build_model("flow_matching", 2, 2)``, trained ``--fm-steps``
   steps on a banana so that its field is not the linear-Gaussian baseline's) integrated from noise for
   10,000 samples of one context with ``physgen.models._ode.odeint`` (rk4, 8 steps on the power-2 grid:
   the sampling default; dopri5) and ``zuko.utils.odeint`` (adaptive Dormand-Prince; zuko has no
   fixed-step method), all on the same vector field (``FlowMatching.vector_field``), dopri5 and zuko at the
   same atol = rtol (``--tols``), plus ``FlowMatching.sample`` itself (rk4-8 on the folded-conditioning
   path that a fixed grid allows). Error: against rk4 with 200 steps on the first ``--ref-rows`` rows
   (whose own error, against float64 rk4-400, is printed); evaluations of the field are counted. Then
   log_prob by the instantaneous change of variables, exact trace, at the model's atol = rtol = 1e-5:
   ``FlowMatching.log_prob`` (dopri5, its default; and rk4-8), ``zuko.utils.odeint`` on the same augmented
   field (x, ∫ div v) and zuko's ``FreeFormJacobianTransform``, against float64 rk4-200 on 100 rows.

Timings are medians over ``--repeats`` (ODE part: ``--ode-repeats``) rounds in which every variant runs
once in turn (a drift of the machine's speed hits all alike). Ends with ``RESULT {json}``.

    python benchmarks/numerics_vs_zuko.py --threads 1
    python benchmarks/numerics_vs_zuko.py --quick        # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, result_line

import zuko
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.transforms import FreeFormJacobianTransform, MonotonicRQSTransform

from physgen.models import build_model
from physgen.models._coupling import SplineCoupling
from physgen.models._ode import divergence, odeint, standard_normal_log_prob
from physgen.models.flow import _RQS
from simulators.sbibm import TwoMoons


def interleaved(fns: dict, repeats: int, counter: dict | None = None) -> tuple[dict[str, float], dict, dict]:
    """Every function run once per round, in turn, for ``repeats`` rounds: (median wall time (s) of each, its
    first round's output, ``counter["n"]`` after its first round, reset before it)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    first: dict = {}
    counts: dict = {}
    for r in range(repeats):
        for k, fn in fns.items():
            if counter is not None:
                counter["n"] = 0
            t0 = time.perf_counter()
            y = fn()
            times[k].append(time.perf_counter() - t0)
            if r == 0:
                first[k] = y
                counts[k] = counter["n"] if counter is not None else None
    return {k: statistics.median(v) for k, v in times.items()}, first, counts


# --- 1. coupling spline ---------------------------------------------------------------------------------


def zuko_twin(flow_model: nn.Module, univariate) -> nn.Module:
    """A copy of a physgen ``Flow`` whose ``SplineCoupling`` layers are zuko ``GeneralCouplingTransform``s with
    ``univariate`` splines, holding the same weights (loaded from each layer's state dict, strictly)."""
    twin = copy.deepcopy(flow_model)
    layers = twin.flow.transform.transforms
    hidden = tuple(flow_model.config["hidden_features"])
    swapped = 0
    for i, layer in enumerate(layers):
        if not isinstance(layer, SplineCoupling):
            continue
        k = layer.bins
        features = layer.mask.numel()
        context = layer.hyper[0].in_features - int(layer.mask.sum())
        new = GeneralCouplingTransform(
            features, context, mask=layer.mask,
            univariate=partial(univariate, bound=layer.bound, slope=layer.slope),
            shapes=[(k,), (k,), (k - 1,)], hidden_features=hidden, activation=partial(nn.ReLU, inplace=True),
        )
        new.load_state_dict(layer.state_dict())
        layers[i] = new
        swapped += 1
    assert swapped > 0, "no SplineCoupling layer found in the physgen flow"
    return twin


def two_moons_rows(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """θ ~ U(-1, 1)², x ~ two moons(θ): (θ, x), each ``(n, 2)``."""
    g = torch.Generator().manual_seed(seed)
    task = TwoMoons()
    theta = 2 * torch.rand(n, 2, generator=g) - 1
    return theta, task.simulate(theta, generator=g)


def bench_coupling(args) -> dict:
    torch.manual_seed(args.seed)
    theta, x = two_moons_rows(4096, args.seed)
    pg = build_model("nsf", 2, 2)
    pg.warm_start(theta, x)
    with torch.no_grad():  # curved splines (a trained flow's, not the identity of the zero-initialised layers)
        for layer in pg.flow.transform.transforms:
            if isinstance(layer, SplineCoupling):
                layer.hyper[-1].weight.normal_(0, 0.3)
                layer.hyper[-1].bias.normal_(0, 0.3)
    models = {
        "physgen": pg,
        "zuko": zuko_twin(pg, MonotonicRQSTransform),
        "zuko_coupling+physgen_knots": zuko_twin(pg, _RQS),
    }

    # the same function: log_prob and samples in float64 from the same weights and noise
    t64, x64 = theta[:2000].double(), x[:2000].double()
    lp = {k: copy.deepcopy(m).double().log_prob(t64, x64).detach() for k, m in models.items()}
    with torch.no_grad():
        smp = {k: copy.deepcopy(m).double().sample((2000,), x64[0], generator=torch.Generator().manual_seed(3))
               for k, m in models.items()}
    check = {
        "logprob_max_abs_diff_vs_zuko": float((lp["physgen"] - lp["zuko"]).abs().max()),
        "sample_max_abs_diff_vs_zuko": float((smp["physgen"] - smp["zuko"]).abs().max()),
        "logprob_mean": float(lp["zuko"].mean()),
    }
    print(f"same function (float64, 2,000 rows): max |Δ log_prob| physgen vs zuko {check['logprob_max_abs_diff_vs_zuko']:.2e}"
          f" (mean log_prob {check['logprob_mean']:.3f}); max |Δ sample| {check['sample_max_abs_diff_vs_zuko']:.2e}")

    b = 512
    tb, xb = theta[:b], x[:b]
    ctx = x[0]

    def train_step(m):
        def run():
            for _ in range(args.calls):
                m.zero_grad(set_to_none=True)
                m.loss(tb, xb).backward()
        return run

    def sample(m):
        def run():
            with torch.no_grad():
                m.sample((args.samples,), ctx, generator=torch.Generator().manual_seed(1))
        return run

    for m in models.values():  # warm-up
        train_step(m)()
        sample(m)()
    t_train = interleaved({k: train_step(m) for k, m in models.items()}, args.repeats)[0]
    t_sample = interleaved({k: sample(m) for k, m in models.items()}, args.repeats)[0]
    out = {"check": check, "train_step_ms": {}, "sample_ms": {}}
    print(f"loss forward+backward, batch {b} (ms per step, median of {args.repeats} x {args.calls} steps)"
          f"   |   sampling {args.samples:,} rows, one context (ms, median of {args.repeats})")
    for k in models:
        tr, sa = 1e3 * t_train[k] / args.calls, 1e3 * t_sample[k]
        out["train_step_ms"][k], out["sample_ms"][k] = tr, sa
        print(f"  {k:30s} train {tr:7.2f} ms  (zuko/this {t_train['zuko'] / t_train[k]:.2f}x)"
              f"   sample {sa:7.1f} ms  (zuko/this {t_sample['zuko'] / t_sample[k]:.2f}x)")
    out["train_speedup_vs_zuko"] = t_train["zuko"] / t_train["physgen"]
    out["sample_speedup_vs_zuko"] = t_sample["zuko"] / t_sample["physgen"]
    return out


# --- 2. ODE solvers -------------------------------------------------------------------------------------


def banana(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """context c ~ N(0, I₂); θ = (c₁ + u, c₂ + 0.8 (u² - 1) + 0.15 ε), u, ε ~ N(0, 1): (θ, c)."""
    c = torch.randn(n, 2, generator=g)
    u, e = torch.randn(n, generator=g), torch.randn(n, generator=g)
    return torch.stack([c[:, 0] + u, c[:, 1] + 0.8 * (u * u - 1) + 0.15 * e], -1), c


def train_fm(steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    m = build_model("flow_matching", 2, 2)
    th, c = banana(4096, g)
    m.warm_start(th, c)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    first = last = None
    for i in range(steps):
        th, c = banana(256, g)
        loss = m.loss(th, c, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if i == 0 else first
        last = float(loss.detach())
    print(f"flow matching trained {steps} steps on the banana: loss {first:.3f} -> {last:.3f}")
    return m.eval()


def bench_ode(args) -> dict:
    m = train_fm(args.fm_steps, args.seed)
    cfg = m.config
    ctx = torch.tensor([[0.5, -0.3]])
    n = args.samples
    x0 = torch.randn(n, 1, 2, generator=torch.Generator().manual_seed(7))
    calls = {"n": 0}

    def field(model, c):
        def f(t, y):
            calls["n"] += 1
            return model.vector_field(y, t, c)
        return f

    f32 = field(m, ctx)
    # reference on the first ``ref_rows`` rows (rows are independent given the context): rk4, 200 steps on the
    # power-2 grid; its own error: against float64 rk4-400 on the first 100 rows
    r = min(args.ref_rows, n)
    with torch.no_grad():
        ref = odeint(f32, x0[:r], 0.0, 1.0, method="rk4", steps=200, power=cfg["step_power"]).reshape(r, 2).double()
        m64 = copy.deepcopy(m).double()
        ref400 = odeint(field(m64, ctx.double()), x0[:100].double(), 0.0, 1.0, method="rk4", steps=400,
                        power=cfg["step_power"]).reshape(-1, 2)
    ref_err = float((ref[:100] - ref400).norm(dim=-1).max())
    print(f"reference: rk4-200 (power-{cfg['step_power']:g} grid) on the first {r:,} rows; "
          f"its error vs float64 rk4-400 (100 rows): max {ref_err:.1e}")

    tols = args.tols
    solvers = {f"physgen rk4-{cfg['steps']}": lambda: odeint(f32, x0, 0.0, 1.0, method="rk4", steps=cfg["steps"],
                                                             power=cfg["step_power"])}
    for tol in tols:
        solvers[f"physgen dopri5 tol {tol:g}"] = partial(odeint, f32, x0, 0.0, 1.0, method="dopri5",
                                                        steps=cfg["log_prob_steps"], atol=tol, rtol=tol)
        solvers[f"zuko odeint tol {tol:g}"] = partial(zuko.utils.odeint, f32, x0, 0.0, 1.0, atol=tol, rtol=tol)
    shipped = f"FlowMatching.sample (rk4-{cfg['steps']}, folded)"
    solvers[shipped] = lambda: m.sample((n,), ctx, generator=torch.Generator().manual_seed(7))

    out = {"reference_error": ref_err, "sampling": {}}
    with torch.no_grad():
        timing, results, nfes = interleaved(solvers, args.ode_repeats, calls)
    base = f"physgen rk4-{cfg['steps']}"
    print(f"sampling {n:,} rows, one context (ms, median of {args.ode_repeats}); error vs reference "
          f"(|Δ| per row, max / RMS over the first {r:,} rows)")
    for k, y in results.items():
        d = (y.reshape(n, 2)[:r].double() - ref).norm(dim=-1)
        row = {"ms": 1e3 * timing[k], "nfe": nfes[k] if k != shipped else None, "max_err": float(d.max()),
               "rms_err": float(d.square().mean().sqrt())}
        out["sampling"][k] = row
        nfe_s = f"{row['nfe']:4d}" if row["nfe"] is not None else "   -"
        print(f"  {k:36s} {row['ms']:8.1f} ms  nfe {nfe_s}  err max {row['max_err']:.1e}  rms {row['rms_err']:.1e}"
              f"   time / {base} {timing[k] / timing[base]:.2f}x")

    # log-prob ODE (exact divergence): physgen's log_prob; zuko's FreeFormJacobianTransform; and zuko's
    # odeint on physgen's augmented field (x, ∫ div) to separate the solver from the trace computation
    rows = args.logprob_rows
    target = m.sample((rows,), ctx, generator=torch.Generator().manual_seed(11)).reshape(rows, 2)
    tol = cfg["atol"]

    def zuko_ffj(model, c, x, atol, rtol):
        t = FreeFormJacobianTransform(lambda t, y: model.vector_field(y, t, c), t0=1.0, t1=0.0, atol=atol, rtol=rtol,
                                      exact=True)
        z, ladj = t.call_and_ladj(x)
        return standard_normal_log_prob(z) + ladj

    def zuko_solver(model, c, x, atol, rtol):
        def f(t, y):
            v, div = divergence(lambda z: model.vector_field(z, t, c), y[:, :2], None, False)
            return torch.cat([v, div.unsqueeze(-1)], -1)
        y = zuko.utils.odeint(f, torch.cat([x, torch.zeros_like(x[:, :1])], -1), 1.0, 0.0, atol=atol, rtol=rtol)
        return standard_normal_log_prob(y[:, :2]) + y[:, 2]

    with torch.no_grad():
        # reference: float64 rk4-200 on the first 100 rows (rows are independent given the context)
        lp_ref = m64.log_prob(target[:100].double(), ctx.double(), solver="rk4", steps=200)
    lps = {
        f"physgen log_prob (dopri5 tol {tol:g})": lambda: m.log_prob(target, ctx),
        f"physgen log_prob (rk4-{cfg['steps']})": lambda: m.log_prob(target, ctx, solver="rk4", steps=cfg["steps"]),
        f"zuko odeint, same field (tol {tol:g})": lambda: zuko_solver(m, ctx, target, tol, tol),
        f"zuko FFJ transform (tol {tol:g})": lambda: zuko_ffj(m, ctx, target, tol, tol),
    }
    out["log_prob"] = {}
    net_calls = {"n": 0}
    hook = m.net.register_forward_pre_hook(lambda *_: net_calls.__setitem__("n", net_calls["n"] + 1))
    with torch.no_grad():
        timing, vals, nfes = interleaved(lps, args.ode_repeats, net_calls)
    hook.remove()
    first = next(iter(lps))
    print(f"log_prob of {rows:,} rows, one context, exact trace (ms, median of {args.ode_repeats}); "
          "|error| vs float64 rk4-200 on the first 100 rows")
    for k, v in vals.items():
        d = (v[:100].double() - lp_ref).abs()
        row = {"ms": 1e3 * timing[k], "nfe": nfes[k], "max_err": float(d.max()), "mean_err": float(d.mean())}
        out["log_prob"][k] = row
        print(f"  {k:36s} {row['ms']:8.1f} ms  nfe {row['nfe']:4d}  err max {row['max_err']:.1e}  mean {row['mean_err']:.1e}"
              f"   time / physgen dopri5 {timing[k] / timing[first]:.2f}x")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=None, help="timing rounds (median)")
    ap.add_argument("--ode-repeats", type=int, default=None, help="timing rounds of the ODE part (median)")
    ap.add_argument("--calls", type=int, default=None, help="training steps per timing of the coupling flows")
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--ref-rows", type=int, default=1_000, help="rows scored against the rk4-200 reference")
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-3, 1e-4],
                    help="atol = rtol of the adaptive solvers in the sampling sweep")
    ap.add_argument("--logprob-rows", type=int, default=500)
    ap.add_argument("--fm-steps", type=int, default=None, help="flow-matching training steps on the banana")
    ap.add_argument("--only", choices=("coupling", "ode"), default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.repeats = args.repeats or (2 if args.quick else 15)
    args.ode_repeats = args.ode_repeats or (2 if args.quick else 3)
    args.calls = args.calls or (2 if args.quick else 10)
    args.fm_steps = args.fm_steps if args.fm_steps is not None else (20 if args.quick else 200)
    if args.quick:
        args.samples, args.logprob_rows, args.ref_rows = 1_000, 200, 200
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    info["zuko"] = zuko.__version__
    with contextlib.suppress(OSError):
        info["loadavg_start"] = list(os.getloadavg())
    print("machine:", info)
    t0 = time.perf_counter()
    res = {"benchmark": "numerics_vs_zuko", "machine": info}
    if args.only in (None, "coupling"):
        print("\n== 1. coupling rational-quadratic spline: physgen SplineCoupling vs zuko GeneralCouplingTransform ==")
        res["coupling"] = bench_coupling(args)
    if args.only in (None, "ode"):
        print("\n== 2. ODE solvers: physgen odeint vs zuko.utils.odeint (flow-matching sampling) ==")
        res["ode"] = bench_ode(args)
    with contextlib.suppress(OSError):
        info["loadavg_end"] = list(os.getloadavg())
    res["seconds"] = time.perf_counter() - t0
    print(f"\ntotal {res['seconds']:.0f} s; load average at end {info.get('loadavg_end')}")
    print(result_line(res))


if __name__ == "__main__":
    main()
