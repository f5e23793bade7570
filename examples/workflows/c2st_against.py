"""C2ST of one run's posterior draws against another run's stored references (the same observations).

    python examples/workflows/c2st_against.py RUN RUN_WITH_REFERENCES

For a run validated with ``reference = "none"``: reads ``RUN/report/posterior_samples.nc`` and
``RUN_WITH_REFERENCES/report/reference_samples.nc`` (a run of the same simulator, observations and seed) and
scores each observation as ``physgen validate`` does: equal sample counts, the reference subsampled with the
seed, :func:`physgen.diagnostics.c2st`. On a run against its own references it reproduces the run's C2ST.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import xarray as xr

from physgen.diagnostics import c2st


def main(run: str, ref_run: str, seed: int = 0) -> list[float]:
    post = xr.open_dataset(f"{run}/report/posterior_samples.nc", group="posterior")
    ref = xr.open_dataset(f"{ref_run}/report/reference_samples.nc", group="posterior")
    names = list(post.data_vars)
    P = np.stack([post[n].values for n in names], -1)  # (1, S, K, D)
    R = np.stack([ref[n].values for n in names], -1)  # (chains, draws, K, D)
    scores = []
    for k in range(P.shape[2]):
        p = torch.tensor(P[0, :, k], dtype=torch.float32)
        r = torch.tensor(R[:, :, k].reshape(-1, R.shape[-1]), dtype=torch.float32)
        n = min(len(p), len(r))
        r = r[torch.randperm(len(r), generator=torch.Generator().manual_seed(seed))[:n]]
        scores.append(float(c2st(p[:n], r, seed=seed)))
        print(k, round(scores[-1], 4), "std ratio", (p.std(0) / r.std(0)).numpy().round(3))
    print("mean", round(float(np.mean(scores)), 4))
    return scores


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
