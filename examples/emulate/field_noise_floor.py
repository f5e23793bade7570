"""What a perfect field emulator would score: the simulator compared with itself, as `physgen emulate` scores one.

    python examples/emulate/field_noise_floor.py [--num-theta 20] [--num-per-theta 1000] [--json OUT]

At the ``num_theta`` parameter sets of `examples/emulate/lognormal_field.toml`'s comparison (the same prior
draws, seed 0) it simulates two independent sets of ``num_per_theta`` lognormal fields (32 x 32, box
128 Mpc/h), scores one against the other with the report's statistics (``compare_fields_at``, P(k) over
0.05 < k < k_Nyquist / 2) and prints the medians over θ of the figures the emulator targets are stated on
(docs/emulators.md). An emulator cannot be expected to beat these: they are the scatter of the comparison
itself at that many fields. About two minutes at 20 x 1,000 on one CPU thread.
"""

from __future__ import annotations

import argparse
import json

import torch

from physgen.config import resolve_simulator
from physgen.emulator_comparison import _medians, compare_fields_at
from physgen.priors import sample_prior

KEYS = {
    "power_spectrum.median_abs_ratio_dev": "|P ratio - 1|, median bin",
    "power_spectrum.max_abs_ratio_dev": "|P ratio - 1|, worst bin",
    "power_spectrum.chi2_dof": "mean P(k) difference chi2/dof",
    "variance.max_abs_dev": "P(k) variance, worst bin",
    "correlation.max_abs_offdiag_diff": "P(k) correlations, largest |delta rho|",
    "pdf.chi2_dof": "one-point PDF chi2/dof",
    "peaks.chi2_dof": "peak counts chi2/dof",
}


def noise_floor(num_theta: int, num_per_theta: int) -> dict[str, float]:
    """Medians over ``num_theta`` prior draws of the simulator-vs-simulator statistics (``KEYS``)."""
    sim = resolve_simulator("lognormal_field", {"n": 32, "box_size": 128.0, "dim": 2})
    g = torch.Generator().manual_seed(0)  # the θ of the emulate config's comparison (its seed 0)
    theta = sample_prior(sim.prior, (num_theta,), generator=g)
    other = torch.Generator().manual_seed(12345)
    rows = []
    for t in theta:
        a = sim.simulate(t.expand(num_per_theta, -1), generator=g)
        b = sim.simulate(t.expand(num_per_theta, -1), generator=other)
        metrics, _ = compare_fields_at(a.float(), b.float(), theta=t, simulator=sim)
        rows.append({"theta": t.tolist(), **metrics})
    medians = _medians(rows)
    return {key: medians[key] for key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-theta", type=int, default=20)
    parser.add_argument("--num-per-theta", type=int, default=1000)
    parser.add_argument("--json", default=None, help="also write the medians to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    floor = noise_floor(args.num_theta, args.num_per_theta)
    print(f"the simulator against itself, {args.num_per_theta} fields a side, medians over {args.num_theta} θ:")
    for key, label in KEYS.items():
        print(f"  {label:42s} {floor[key]:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(floor, f, indent=1)


if __name__ == "__main__":
    main()
