"""Ising emulator benchmark (issue 15): the autoregressive emulator at β_c against MCMC and Kaufman.

Stages (each writes ``<out>/<stage>.json``; ``report`` prints the table and ``RESULT {json}``):

* ``ml16``: L = 16, trained by maximum likelihood (physgen.fit) on Wolff configurations with β uniform
  on a grid over ``[0.38, 0.50]``; at β_c, ⟨E⟩/N, ⟨|m|⟩, C/N, χ/N of the raw emulator samples and of the
  importance-weighted ones against a long Wolff run (and ⟨E⟩, ln Z against Kaufman);
* ``van8``: L = 8, trained variationally at β_c alone: F_q against Kaufman (relative) and the
  importance-sampled ln Z (z in standard errors);
* ``ml32``: L = 32, maximum likelihood as ``ml16`` with a fixed training budget;
* ``cost``: at β_c, L = 16 and 32, seconds per effectively independent sample on one CPU thread:
  the emulator's (draw + log q + energy, divided by the importance-sampling ESS; and per raw draw) beside
  checkerboard Metropolis's (seconds per sweep per lattice x 2 τ_int, the larger τ_int of E and |m|).

Usage::

    python benchmarks/ising_emulator.py --stage all            # ~1 h on one CPU thread
    python benchmarks/ising_emulator.py --stage report         # from the saved stages
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, result_line
from physgen.diagnostics.emulator_ising import compare_observables, log_z_check
from physgen.emulators import IsingEmulator, fit_maximum_likelihood, fit_variational, importance_sample
from simulators.ising import BETA_C, Ising
from simulators.ising.chains import WolffChain
from simulators.ising.exact import kaufman_observables

STAGES = ("ml16", "van8", "ml32", "cost")


def wolff_configurations(L: int, betas: torch.Tensor, per_chain: int, *, spacing: int = 2, equilibrate: int = 40,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_chain`` configurations ``spacing`` Wolff sweeps apart from one chain per β: (β (n,), spins (n, L, L))."""
    gen = torch.Generator().manual_seed(seed)
    M = betas.numel()
    spins = (2 * torch.randint(0, 2, (M, L, L), generator=gen) - 1).to(torch.int8)
    b = betas.to(torch.float64)
    chain = WolffChain(spins, b, torch.ones_like(b), torch.zeros_like(b), "auto", gen)
    chain.equilibrate(equilibrate)
    out = []
    for _ in range(per_chain):
        chain.advance(spacing)
        out.append(chain.spins().to(torch.float32))
    return betas.repeat(per_chain).to(torch.float32), torch.cat(out)


def long_mcmc(L: int, beta: float, *, n_measure: int, seed: int) -> dict:
    """Wolff reference at β: 16 chains, ``n_measure`` sweeps each after 100 (Ising.observables)."""
    sim = Ising(L, algorithm="wolff", sweeps=100)
    out = sim.observables(torch.tensor([[beta]]), n_measure, n_chains=16, generator=torch.Generator().manual_seed(seed))
    return {k: float(v.reshape(-1)[0]) for k, v in out.items()}


def _ml_stage(L: int, args, out: Path) -> dict:
    n_chains, per_chain, hidden, budget = ((200, 100, 64, args.ml16_time) if L == 16 else (100, 60, 48, args.ml32_time))
    if args.quick:
        n_chains, per_chain, budget = 20, 20, 60
    t0 = time.perf_counter()
    betas = torch.linspace(0.38, 0.50, n_chains)
    beta, spins = wolff_configurations(L, betas, per_chain, seed=1)
    t_data = time.perf_counter() - t0
    emu = IsingEmulator(L, beta_range=(0.38, 0.50), hidden=hidden)
    t0 = time.perf_counter()
    fit = fit_maximum_likelihood(emu, beta, spins, batch_size=128, lr=2e-3, max_epochs=200, patience=8,
                                 max_time=budget, seed=0, num_threads=1)
    t_train = time.perf_counter() - t0
    torch.save(emu.state_dict(), out / f"emulator_L{L}.pt")
    n_nis = 20000 if L == 16 else 5000
    if args.quick:
        n_nis = 1000
    nis = importance_sample(emu, BETA_C, n_nis, batch_size=1000, generator=torch.Generator().manual_seed(2))
    mcmc = long_mcmc(L, BETA_C, n_measure=500 if args.quick else 4000, seed=3)
    exact = kaufman_observables(L, torch.tensor(BETA_C))
    return {
        "L": L, "n_train": int(spins.shape[0]), "data_seconds": t_data, "train_seconds": t_train,
        "epochs": fit.epochs, "best_val_nll_per_spin": fit.best_val_loss, "hidden": hidden,
        "nis": nis.as_dict(), "mcmc": mcmc,
        "raw_vs_mcmc": compare_observables(nis.raw_observables, mcmc),
        "nis_vs_mcmc": compare_observables(nis.observables, mcmc),
        "exact_energy_per_spin": float(exact["energy_per_spin"]),
        "log_z": log_z_check(nis.log_z, nis.log_z_err, _kaufman(L)),
    }


def _kaufman(L: int) -> float:
    """Kaufman's exact ln Z of the L x L torus at β_c (h = 0)."""
    from simulators.ising.exact import kaufman_log_z

    return float(kaufman_log_z(L, torch.tensor(BETA_C, dtype=torch.float64)))


def _van_stage(args, out: Path) -> dict:
    steps = 60 if args.quick else args.van_steps
    torch.manual_seed(0)
    emu = IsingEmulator(8, beta_range=(BETA_C, BETA_C), hidden=args.van_hidden)
    t0 = time.perf_counter()
    hist = fit_variational(emu, steps=steps, batch_size=256, lr=2e-3, seed=0)
    t_train = time.perf_counter() - t0
    torch.save(emu.state_dict(), out / "emulator_L8_van.pt")
    nis = importance_sample(emu, BETA_C, 2000 if args.quick else 20000, generator=torch.Generator().manual_seed(1))
    check = log_z_check(nis.log_z, nis.log_z_err, _kaufman(8))
    F = -check["exact"] / BETA_C
    return {"L": 8, "hidden": args.van_hidden, "steps": len(hist), "train_seconds": t_train, "nis": nis.as_dict(), "log_z": check,
            "free_energy_exact": F, "free_energy_rel_err": (nis.variational_free_energy - F) / abs(F),
            "free_energy_rel_err_se": nis.variational_free_energy_err / abs(F)}


def _metropolis_cost(L: int, *, n_measure: int, sweeps: int, n_chains: int = 32) -> dict:
    sim = Ising(L, algorithm="metropolis", sweeps=sweeps)
    t0 = time.perf_counter()
    obs = sim.observables(torch.tensor([[BETA_C]]), n_measure, n_chains=n_chains,
                          generator=torch.Generator().manual_seed(4))
    seconds = time.perf_counter() - t0
    per_sweep = seconds / ((sweeps + n_measure) * n_chains)
    tau = max(float(obs["tau_int_energy"]), float(obs["tau_int_abs_magnetisation"]))
    return {"seconds_per_sweep_per_lattice": per_sweep, "tau_int_energy": float(obs["tau_int_energy"]),
            "tau_int_abs_magnetisation": float(obs["tau_int_abs_magnetisation"]),
            "seconds_per_independent_sample": per_sweep * 2 * tau}


def _cost_stage(args, out: Path) -> dict:
    res = {}
    for L, hidden in ((16, 64), (32, 48)):
        path = out / f"emulator_L{L}.pt"
        emu = IsingEmulator(L, beta_range=(0.38, 0.50), hidden=hidden)
        if path.exists():
            emu.load_state_dict(torch.load(path))
        n = 1000 if L == 16 else 500
        nis = importance_sample(emu, BETA_C, n, batch_size=n, generator=torch.Generator().manual_seed(5))
        metro = _metropolis_cost(L, n_measure=500 if args.quick else 4000, sweeps=1000 if L == 16 else 2000)
        res[f"L{L}"] = {"emulator_trained": path.exists(), "emulator_seconds_per_draw": nis.seconds / n,
                        "emulator_ess_fraction": nis.ess_fraction,
                        "emulator_seconds_per_effective_sample": nis.seconds_per_effective_sample,
                        "metropolis": metro}
    return res


def report(out: Path) -> dict:
    result = {}
    for stage in STAGES:
        p = out / f"{stage}.json"
        if p.exists():
            result[stage] = json.loads(p.read_text())
    for key in ("ml16", "ml32"):
        r = result.get(key)
        if r:
            print(f"\nL = {r['L']}, maximum likelihood on {r['n_train']} Wolff configurations ({r['train_seconds']:.0f} s, "
                  f"{r['epochs']} epochs, val NLL {r['best_val_nll_per_spin']:.4f} nats/spin); at beta_c:")
            for which in ("raw_vs_mcmc", "nis_vs_mcmc"):
                for name, c in r[which].items():
                    if name in ("energy_per_spin", "abs_magnetisation", "specific_heat_per_spin", "susceptibility_per_spin"):
                        print(f"  {which[:3]:3s} {name:24s} {c['value']:9.4f} vs MCMC {c['reference']:9.4f}  "
                              f"rel {100 * c['rel_diff']:+6.2f}%  z {c['z']:+6.1f}")
            lz = r["log_z"]
            print(f"  ln Z (NIS) {lz['log_z']:.3f} ± {lz['log_z_err']:.3f} vs Kaufman {lz['exact']:.3f} (z {lz['z']:+.1f}); "
                  f"ESS {r['nis']['ess']:.0f} of {r['nis']['n']}; exact <E>/N {r['exact_energy_per_spin']:.4f}")
    r = result.get("van8")
    if r:
        lz = r["log_z"]
        print(f"\nL = 8 variational at beta_c ({r['steps']} steps, {r['train_seconds']:.0f} s): F_q rel err "
              f"{r['free_energy_rel_err']:.2e} ± {r['free_energy_rel_err_se']:.1e}; ln Z {lz['log_z']:.4f} ± {lz['log_z_err']:.4f} "
              f"vs {lz['exact']:.4f} (z {lz['z']:+.2f}); ESS fraction {r['nis']['ess_fraction']:.3f}")
    r = result.get("cost")
    if r:
        print("\ncost per effectively independent sample at beta_c (1 CPU thread):")
        for key, c in r.items():
            if not key.startswith("L"):
                continue
            m = c["metropolis"]
            print(f"  {key}: emulator {1e3 * c['emulator_seconds_per_effective_sample']:.2f} ms (per draw "
                  f"{1e3 * c['emulator_seconds_per_draw']:.2f} ms, ESS fraction {c['emulator_ess_fraction']:.3f}); "
                  f"Metropolis {1e3 * m['seconds_per_independent_sample']:.3f} ms (sweep {1e6 * m['seconds_per_sweep_per_lattice']:.1f} us "
                  f"x 2 tau_int, tau_int(E) {m['tau_int_energy']:.1f}, tau_int(|m|) {m['tau_int_abs_magnetisation']:.1f})")
    result["machine"] = machine()
    print(result_line(result))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", default="all", choices=("all", "report", *STAGES))
    ap.add_argument("--out", default="runs/ising_emulator")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run; numbers are not the benchmark's)")
    ap.add_argument("--ml16-time", type=float, default=1200.0, help="training budget at L = 16, seconds")
    ap.add_argument("--ml32-time", type=float, default=900.0, help="training budget at L = 32, seconds")
    ap.add_argument("--van-steps", type=int, default=1500)
    ap.add_argument("--van-hidden", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = {"ml16": lambda: _ml_stage(16, args, out), "ml32": lambda: _ml_stage(32, args, out),
           "van8": lambda: _van_stage(args, out), "cost": lambda: _cost_stage(args, out)}
    for stage in (STAGES if args.stage == "all" else (args.stage,) if args.stage != "report" else ()):
        t0 = time.perf_counter()
        res = run[stage]()
        res["stage_seconds"] = time.perf_counter() - t0
        (out / f"{stage}.json").write_text(json.dumps(res, indent=1, default=lambda v: None if not math.isfinite(v) else v))
        print(f"stage {stage} done in {res['stage_seconds']:.0f} s", flush=True)
    report(out)


if __name__ == "__main__":
    main()
