"""Compare two ``physgen run`` folders: accuracy against the reference and posterior widths, side by side.

    python examples/workflows/compare_runs.py RUN_A RUN_B

Reads ``RUN/report/metrics.json`` of both and prints, per run, the mean C2ST against the reference, the mean
ratio of posterior to reference standard deviations and the mean posterior standard deviation per parameter;
then the ratio of mean widths A / B per parameter (< 1: A is tighter). When the runs' simulator is a
``GaussianField`` (``[simulator] name = "gaussian_field"`` in ``RUN/config.toml``), it also prints the
Fisher-forecast σ of the exact likelihood at each observation's true θ (the Cramér-Rao width,
:func:`simulators.cosmology.fisher_sigma`) and its mean, as a baseline width.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def load(run: Path) -> dict:
    path = run / "report" / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: run `physgen run CONFIG --run-dir {run}` first")
    data = json.loads(path.read_text())
    return data.get("metrics", data)  # report/metrics.json nests the figures under "metrics"


def fisher(run: Path, metrics: dict) -> list[list[float]] | None:
    """Fisher σ at every observation's θ_true for a gaussian_field run (None otherwise)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    cfg = tomllib.loads((run / "config.toml").read_text())
    if cfg.get("simulator", {}).get("name") != "gaussian_field":
        return None
    import torch

    from simulators.cosmology import GaussianField, fisher_sigma

    sim = GaussianField(**cfg["simulator"].get("options", {}))
    thetas = [o["theta_true"] for o in metrics.get("observations", []) if "theta_true" in o]
    if not thetas:
        return None
    return fisher_sigma(sim, torch.tensor(thetas, dtype=torch.float64)).tolist()


def summary(name: str, run: Path, m: dict) -> list[float]:
    widths = m.get("posterior_std_mean")
    print(f"{name}: {run}")
    print(f"  c2st_mean       {m.get('c2st_mean', 'n/a')}")
    print(f"  std_ratio_mean  {m.get('std_ratio_mean', 'n/a')}   (posterior / reference std, per parameter)")
    print(f"  posterior_std   {widths}   (mean over observations)")
    cov = m.get("calibration", {}).get("coverage", {})
    if cov.get("levels"):
        at = {f"{lv:.2f}": round(c, 3) for lv, c in zip(cov["levels"], cov["coverage"])
              if any(abs(lv - q) < 1e-6 for q in (0.5, 0.65, 0.7, 0.9, 0.95))}
        print(f"  coverage        {at}  (max |deviation| {cov.get('max_abs_deviation', float('nan')):.3f})")
    sbc = m.get("calibration", {}).get("sbc", {})
    if sbc:
        print(f"  SBC p-values    {[round(p, 3) for p in sbc.get('p_values', [])]}")
    return widths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    args = ap.parse_args()
    ma, mb = load(args.run_a), load(args.run_b)
    wa = summary("A", args.run_a, ma)
    wb = summary("B", args.run_b, mb)
    if wa and wb:
        ratio = [a / b for a, b in zip(wa, wb)]
        print(f"width ratio A / B (mean posterior std, per parameter): {[round(r, 4) for r in ratio]}  "
              f"(<= 1: A at least as tight as B)")
    sig = fisher(args.run_a, ma)
    if sig is not None:
        mean = [sum(col) / len(col) for col in zip(*sig)]
        print(f"Fisher-forecast sigma at the observations' true theta: {[[round(v, 4) for v in s] for s in sig]}")
        print(f"  mean {[round(v, 4) for v in mean]}  (the exact likelihood's Cramér-Rao width, ignores the prior box)")
    print("RESULT " + json.dumps({"c2st_mean": [ma.get("c2st_mean"), mb.get("c2st_mean")],
                                  "std_ratio_mean": [ma.get("std_ratio_mean"), mb.get("std_ratio_mean")],
                                  "posterior_std_mean": [wa, wb], "fisher_sigma": sig}))


if __name__ == "__main__":
    main()
