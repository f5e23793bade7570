"""VMC diagonal-shift schedule: geometric decay from diag_shift to diag_shift_final over the run."""

import math

import torch

from physgen.quantum.hamiltonians import TransverseFieldIsing
from physgen.quantum.lattice import Chain
from physgen.quantum.rnn import RNNWavefunction
from physgen.quantum.vmc import VMC


def test_diag_shift_decays_geometrically_and_v_score_is_reported():
    torch.manual_seed(0)
    v = VMC(
        TransverseFieldIsing(Chain(4)),
        RNNWavefunction(4, hidden=4),
        n_samples=32,
        diag_shift=1e-2,
        diag_shift_final=1e-4,
        lr=0.01,
        lr_final=0.001,
    )
    seen = []
    step = v.step
    v.step = lambda: (seen.append(v._shift_now), step())[1]  # the shift each step used
    hist = v.run(5)
    assert [round(math.log10(s), 6) for s in seen] == [-2.0, -2.5, -3.0, -3.5, -4.0]
    assert all(math.isfinite(h["v_score"]) and h["variance"] >= 0 for h in hist)
