"""C2ST with sbi's classifier (physgen's default) and with sbibm's, against the exact answer.

For two Gaussians the best possible accuracy of any classifier is known in closed form (the Bayes accuracy
(1 + TV(P, Q)) / 2 with equal sample sizes), so the C2ST that comes closer to it, from below, is the stronger
test. Pairs:

* shift: P = N(0, I_D), Q = N(delta e, I_D) with |delta e| = d: Bayes accuracy Phi(d / 2);
* scale: P = N(0, I_D), Q = N(0, s^2 I_D), s > 1: the boundary is |x|^2 = t, t = 2 D s^2 ln s / (s^2 - 1), and
  TV = F(t) - F(t / s^2) with F the chi-square CDF with D degrees of freedom.

The sbibm paper's published means were computed with sbibm's classifier (no early stopping, ``max_iter=10000``),
physgen's rows with sbi's (early stopping) unless a row says otherwise: this script shows how the two differ by
dimension, on pairs whose truth is known.

    python benchmarks/c2st_classifiers.py                       # D = 2, 5, 10; 10,000 draws a side
    python benchmarks/c2st_classifiers.py --dims 2 --n 2000     # quick

Prints one line per pair and ends with ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path

import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, result_line

from physgen.diagnostics import c2st


def bayes_shift(d: float) -> float:
    """Best accuracy between N(0, I) and N(mu, I), |mu| = d."""
    return float(stats.norm.cdf(d / 2))


def bayes_scale(dim: int, s: float) -> float:
    """Best accuracy between N(0, I_dim) and N(0, s^2 I_dim), s > 1."""
    t = 2 * dim * s**2 * math.log(s) / (s**2 - 1)
    return 0.5 + 0.5 * float(stats.chi2.cdf(t, dim) - stats.chi2.cdf(t / s**2, dim))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", nargs="+", type=int, default=[2, 5, 10])
    ap.add_argument("--n", type=int, default=10_000, help="draws a side")
    ap.add_argument("--shift", type=float, default=0.5, help="|delta| of the shift pair (Bayes Phi(0.25) = 0.599)")
    ap.add_argument("--scale", type=float, default=1.15, help="s of the scale pair")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    print("machine:", machine())
    print(f"{'pair':6s} {'D':>3s} {'exact':>6s} {'sbi':>6s} {'sbibm':>6s}   seconds (sbi, sbibm)")
    rows = []
    for dim in args.dims:
        g = torch.Generator().manual_seed(dim)
        a, b = torch.randn(args.n, dim, generator=g), torch.randn(args.n, dim, generator=g)
        shift = torch.zeros(dim)
        shift[0] = args.shift
        for pair, other, exact in (
            ("shift", b + shift, bayes_shift(args.shift)),
            ("scale", b * args.scale, bayes_scale(dim, args.scale)),
        ):
            t0 = time.perf_counter()
            ours = c2st(a, other, seed=1)
            t1 = time.perf_counter()
            theirs = c2st(a, other, seed=1, classifier="sbibm")
            t2 = time.perf_counter()
            print(f"{pair:6s} {dim:3d} {exact:6.3f} {ours:6.3f} {theirs:6.3f}   {t1 - t0:5.0f} {t2 - t1:5.0f}", flush=True)
            row = {"pair": pair, "dim": dim, "exact": exact, "sbi": ours, "sbibm": theirs}
            rows.append(row | {"seconds": [t1 - t0, t2 - t1]})
    print(result_line({"benchmark": "c2st_classifiers", "n": args.n, "rows": rows, "machine": machine()}))


if __name__ == "__main__":
    main()
