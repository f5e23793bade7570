"""Field emulators compared: flow matching vs diffusion vs GAN vs VAE on the same 32x32 lognormal fields.

Every family is trained with ``physgen.fit_emulator`` on the same simulations of
``LognormalField(n=32, box_size=128, dim=2)`` (θ = (Ω_m, σ8) from its prior) under the same wall-clock budget,
then scored by ``physgen.diagnostics.emulator.compare_fields`` at ``--thetas`` parameter sets drawn from the
prior (``--fields`` simulated and emulated fields each): the P(k) ratio for 0.05 < k < k_Nyquist / 2, the χ²/dof
of the mean P(k) difference in units of the simulator's covariance, the per-bin variance ratio, the largest
off-diagonal P(k) correlation difference, and the χ²/dof of the one-point PDF, peak counts and Minkowski
functionals, and of the reduced bispectrum Q up to k_Nyquist / 4 (bq_chi2_dof); medians over θ. The cost per
field (sampling) is timed beside the simulator's.

    python benchmarks/emulators.py --quick     # ~10 minutes on 1 CPU thread: 2,000 fields, 60 s per family
    python benchmarks/emulators.py             # the full run: 20,000 fields, 2 h for flow matching, 30 min for
                                               # each other family, 20 θ x 500 fields (hours of CPU)

Writes one figure (``--figure``) and ends with ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import physgen
from benchmarks._common import machine, result_line
from physgen.diagnostics.emulator import compare_fields
from physgen.diagnostics.plots import _figure
from simulators.cosmology import LognormalField

FAMILIES = ("flow_matching", "diffusion", "gan", "vae")


def options_of(family: str, quick: bool) -> dict:
    """model_options per family (the U-Net of flow matching and diffusion is periodic)."""
    if family in ("flow_matching", "diffusion"):
        return {"channels": [16, 32] if quick else [32, 64, 128], "periodic": True}
    return {"channels": [64, 32, 16] if quick else [128, 64, 32]}


def fit_options_of(family: str, quick: bool) -> dict:
    """Training options beside the family's fit_defaults: batches of 64 for every family; in quick mode the
    weight average of flow matching and diffusion decays faster (0.99, not 0.999: a budget of a few hundred
    steps would otherwise leave the average near the initial weights)."""
    return {"batch_size": 64, **({"ema": 0.99} if quick and family in ("flow_matching", "diffusion") else {})}


def score(emulator, sim, thetas: torch.Tensor, n_fields: int, seed: int) -> tuple[list[dict], float, float]:
    """compare_fields at each θ; returns (metrics per θ, seconds per emulated field, per simulated field)."""
    k_nyquist = math.pi * sim.n / sim.box_size
    out, t_emu, t_sim = [], 0.0, 0.0
    for i, theta in enumerate(thetas):
        gen = torch.Generator().manual_seed(seed + i)
        t0 = time.perf_counter()
        x_sim = sim.simulate(theta.expand(n_fields, -1), generator=gen)
        t_sim += time.perf_counter() - t0
        t0 = time.perf_counter()
        x_emu = emulator.sample(n_fields, theta, seed=seed + i)
        t_emu += time.perf_counter() - t0
        out.append(compare_fields(x_sim, x_emu, box_size=sim.box_size, k_range=(0.05, k_nyquist / 2)))
    n = n_fields * len(thetas)
    return out, t_emu / n, t_sim / n


def summary(per_theta: list[dict]) -> dict:
    """Medians over θ of the headline numbers."""
    def med(fn):
        return float(statistics.median(fn(m) for m in per_theta))

    return {
        "pk_max_abs_ratio_dev": med(lambda m: m["power_spectrum"]["max_abs_ratio_dev"]),
        "pk_median_abs_ratio_dev": med(lambda m: m["power_spectrum"]["median_abs_ratio_dev"]),
        "pk_chi2_dof": med(lambda m: m["power_spectrum"]["chi2_dof"]),
        "var_max_abs_dev": med(lambda m: m["variance"]["max_abs_dev"]),
        "corr_max_abs_offdiag_diff": med(lambda m: m["correlation"]["max_abs_offdiag_diff"]),
        "pdf_chi2_dof": med(lambda m: m["pdf"]["chi2_dof"]),
        "peaks_chi2_dof": med(lambda m: m["peaks"]["chi2_dof"]),
        "mf_chi2_dof": med(lambda m: max(m["minkowski"][q]["chi2_dof"] for q in ("area", "perimeter", "euler"))),
        "bq_chi2_dof": med(lambda m: m["bispectrum"]["chi2_dof"] if m["bispectrum"] else float("nan")),
    }


def figure(results: dict, path: Path) -> None:
    """P(k) ratio at the first θ per family (left); median χ²/dof per statistic (right)."""
    fig = _figure(12, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    stats = ["pk_chi2_dof", "pdf_chi2_dof", "peaks_chi2_dof", "mf_chi2_dof", "bq_chi2_dof"]
    width = 0.8 / max(len(results), 1)
    for j, (family, r) in enumerate(results.items()):
        m = r["first_theta"]
        k = np.asarray(m["k"]) * (1 + 0.02 * (j - 1.5))
        ax1.errorbar(k, m["power_spectrum"]["ratio"], m["power_spectrum"]["ratio_err"], fmt="o-", ms=3, label=family)
        ax2.bar(np.arange(len(stats)) + j * width, [max(r["summary"][s], 1e-2) for s in stats], width, label=family)
    ax1.axhline(1, color="black", lw=0.8)
    ax1.axhspan(0.97, 1.03, color="gray", alpha=0.2)
    ax1.set(xscale="log", xlabel="k [h/Mpc]", ylabel="mean P_emu / mean P_sim", title="P(k) ratio at the first θ")
    ax1.legend(fontsize=8)
    ax2.axhline(2, color="black", lw=0.8, ls="--")
    ax2.set_xticks(np.arange(len(stats)) + 0.4 - width / 2, ["P(k)", "PDF", "peaks", "MF (max)", "Q (bisp.)"])
    ax2.set(yscale="log", ylabel="χ²/dof (median over θ)", title="emulated vs simulated, in simulator errors")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few minutes: fewer fields, 60 s of training per family")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--train", type=int, default=None, help="training simulations (quick 2,000; full 20,000)")
    ap.add_argument("--max-time", type=float, default=None, help="training seconds per family (quick 60; full 1,800)")
    ap.add_argument("--best-time", type=float, default=None, help="training seconds of flow matching (full 7,200)")
    ap.add_argument("--thetas", type=int, default=None, help="θ scored (quick 4; full 20)")
    ap.add_argument("--fields", type=int, default=None, help="fields per θ and side (quick 100; full 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", default="runs/emulators_benchmark.png")
    args = ap.parse_args()
    q = args.quick
    n_train = args.train or (2000 if q else 20000)
    budget = args.max_time or (60.0 if q else 1800.0)
    best_budget = args.best_time or (budget if q else 7200.0)
    n_theta, n_fields = args.thetas or (4 if q else 20), args.fields or (100 if q else 500)
    torch.set_num_threads(1)

    sim = LognormalField(n=32, box_size=128.0, dim=2)
    t0 = time.perf_counter()
    data = physgen.simulate(sim, n_train, seed=args.seed)
    print(f"simulated {n_train} fields {tuple(data.x.shape[1:])} in {time.perf_counter() - t0:.1f} s", flush=True)
    gen = torch.Generator().manual_seed(args.seed + 12345)
    thetas = sim.prior.low + (sim.prior.high - sim.prior.low) * torch.rand(n_theta, 2, generator=gen)

    results = {}
    for family in args.families.split(","):
        t0 = time.perf_counter()
        emu = physgen.fit_emulator(data, model=family, model_options=options_of(family, q), seed=args.seed,
                                   max_time=best_budget if family == "flow_matching" else budget,
                                   **fit_options_of(family, q))
        train_s = time.perf_counter() - t0
        per_theta, s_emu, s_sim = score(emu, sim, thetas, n_fields, args.seed + 1000)
        results[family] = {"summary": summary(per_theta), "train_seconds": train_s, "epochs": emu.fit_result.epochs,
                           "stopped": emu.fit_result.stopped, "ms_per_field": 1e3 * s_emu, "sim_ms_per_field": 1e3 * s_sim,
                           "parameters": sum(p.numel() for p in emu.parameters()), "first_theta": per_theta[0]}
        print(f"{family}: {emu.fit_result.epochs} epochs in {train_s:.0f} s ({emu.fit_result.stopped}); "
              f"{results[family]['summary']}", flush=True)

    keys = ["pk_max_abs_ratio_dev", "pk_chi2_dof", "var_max_abs_dev", "corr_max_abs_offdiag_diff", "pdf_chi2_dof",
            "peaks_chi2_dof", "mf_chi2_dof", "bq_chi2_dof"]
    print(f"\n{n_train} training fields; medians over {n_theta} θ of {n_fields} fields each; 0.05 < k < k_N/2\n")
    print("| family | epochs | train s | " + " | ".join(keys) + " | ms/field (emu) | ms/field (sim) |")
    print("|" + "---|" * (len(keys) + 5))
    for family, r in results.items():
        s = r["summary"]
        print(f"| {family} | {r['epochs']} | {r['train_seconds']:.0f} | " + " | ".join(f"{s[k]:.3g}" for k in keys)
              + f" | {r['ms_per_field']:.2f} | {r['sim_ms_per_field']:.3f} |")
    figure(results, Path(args.figure))
    print(f"figure: {args.figure}")
    print(result_line({"machine": machine(), "n_train": n_train, "n_theta": n_theta, "n_fields": n_fields, "quick": q,
                       "families": {f: {k: v for k, v in r.items() if k != "first_theta"} for f, r in results.items()}}))


if __name__ == "__main__":
    main()
