"""Compare the posterior widths of two workflow runs at their calibration: ``python compare_widths.py RUN_A RUN_B``.

Reads ``RUN/report/metrics.json`` of both runs (``physgen run`` writes it) and prints, per run, the
calibration figures (expected coverage at the 50, 68, 90 and 95% levels, interpolated on the report's
level grid, SBC's smallest p-value) and two width measures per parameter:

* ``rms_std``: the root-mean-square posterior standard deviation over the held-out test pairs,
  sqrt(prior variance x (1 - mean contraction)) (the report's ``z_scores``; the same test pairs in both
  runs when they share the simulator and ``[validate] seed``);
* ``std_obs``: the mean posterior standard deviation over the report's observations
  (``posterior_std_mean``), when the report has it.

Then the ratios A / B of both (below 1: A is tighter) and their mean over parameters. Exit status 0; 1 when
a file is missing.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

LEVELS = (0.5, 0.68, 0.9, 0.95)


def load(run: str) -> dict:
    """The ``metrics`` of a run folder's report (or of a metrics.json path)."""
    path = Path(run)
    if path.is_dir():
        path = path / "report" / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `physgen run CONFIG --run-dir {run}` first")
    return json.loads(path.read_text())["metrics"]


def coverage_at(cal: dict, level: float) -> float:
    """Expected coverage at ``level``, linear between the report's levels."""
    lv, cv = cal["coverage"]["levels"], cal["coverage"]["coverage"]
    for (l0, c0), (l1, c1) in zip(zip(lv, cv), zip(lv[1:], cv[1:])):
        if l0 - 1e-9 <= level <= l1 + 1e-9:
            return c0 + (c1 - c0) * (level - l0) / (l1 - l0)
    raise ValueError(f"level {level} outside the report's levels {lv[0]}..{lv[-1]}")


def summary(metrics: dict) -> dict:
    """Calibration and widths of one run."""
    cal = metrics["calibration"]
    z = cal["z_scores"]
    rms = [math.sqrt(v * max(1.0 - c, 0.0)) for v, c in zip(z["prior_variance"], z["contraction_mean"])]
    cov = {lev: coverage_at(cal, lev) for lev in LEVELS}
    return {"num_test": cal["num_test"], "coverage": cov, "max_dev": max(abs(c - lev) for lev, c in cov.items()),
            "sbc_min_p": cal["sbc"]["min_p_value"], "passed": cal.get("passed"), "rms_std": rms,
            "std_obs": metrics.get("posterior_std_mean")}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 1
    try:
        runs = [summary(load(r)) for r in argv]
    except FileNotFoundError as err:
        print(err)
        return 1
    for name, s in zip(argv, runs):
        cov = ", ".join(f"{lev:.0%}: {c:.3f}" for lev, c in s["coverage"].items())
        print(f"{name}: {s['num_test']} test pairs; coverage {cov} (max |dev| {s['max_dev']:.3f}); "
              f"SBC min p {s['sbc_min_p']:.3g}; calibration passed: {s['passed']}")
        print(f"  rms posterior std over the test pairs: {[round(v, 5) for v in s['rms_std']]}")
        if s["std_obs"] is not None:
            print(f"  mean posterior std over the observations: {[round(v, 5) for v in s['std_obs']]}")
    a, b = runs
    ratio = [x / y for x, y in zip(a["rms_std"], b["rms_std"])]
    print(f"width ratio A/B (rms std over test pairs): {[round(r, 3) for r in ratio]}; mean {sum(ratio) / len(ratio):.3f}")
    if a["std_obs"] is not None and b["std_obs"] is not None:
        ratio = [x / y for x, y in zip(a["std_obs"], b["std_obs"])]
        print(f"width ratio A/B (posterior_std_mean over observations): {[round(r, 3) for r in ratio]}; "
              f"mean {sum(ratio) / len(ratio):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
