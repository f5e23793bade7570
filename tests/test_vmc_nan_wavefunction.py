"""VMC with a wavefunction whose log-amplitudes turn NaN: a clear stop naming the step, last good checkpoint kept."""

import math

import pytest
import torch

from physgen.io import load_file
from physgen.quantum.hamiltonians import TransverseFieldIsing
from physgen.quantum.lattice import Chain
from physgen.quantum.rbm import RBMWavefunction
from physgen.quantum.metropolis import MetropolisSampler
from physgen.quantum.vmc import VMC, VMCDivergenceError


class _NaNRBM(RBMWavefunction):
    """An RBM whose ``log_psi`` is NaN everywhere once ``bad`` is set."""

    bad = False

    def log_psi(self, sigma):
        out = super().log_psi(sigma)
        return out * float("nan") if self.bad else out


def test_nan_log_psi_stops_with_the_step_and_keeps_the_checkpoint(tmp_path):
    m = _NaNRBM(6, alpha=1, seed=0)
    smp = MetropolisSampler(m, n_chains=16, burn_in=5, generator=torch.Generator().manual_seed(0))
    v = VMC(TransverseFieldIsing(Chain(6)), m, n_samples=64, lr=0.05, diag_shift=1e-2, sampler=smp)
    ck = tmp_path / "ck.safetensors"
    v.run(3, checkpoint=ck, checkpoint_every=1)
    good = {k: p.clone() for k, p in m.state_dict().items()}
    m.bad = True
    with pytest.raises(VMCDivergenceError, match=r"step 3: the energy is not finite"):
        v.run(5, checkpoint=ck, checkpoint_every=1)
    tensors, meta = load_file(ck, kind="vmc")
    assert meta["config"]["step"] == 3
    assert all(math.isfinite(h["energy"]) for h in meta["config"]["history"])
    for k, p in m.state_dict().items():  # the bad step changed nothing
        assert torch.equal(p, good[k]) and torch.equal(p, tensors[f"model.{k}"])
