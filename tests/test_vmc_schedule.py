"""VMC diagonal-shift schedule: geometric decay from diag_shift to diag_shift_final over the run."""

import math

import pytest
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


def test_minsr_equals_sr_with_fewer_or_more_parameters_than_samples():
    from physgen.quantum.sr import sr_direction

    g = torch.Generator().manual_seed(0)
    for B, P in ((50, 20), (20, 50)):  # the P x P branch and the kernel branch
        O = torch.complex(
            torch.randn(B, P, generator=g, dtype=torch.float64), torch.randn(B, P, generator=g, dtype=torch.float64)
        )
        e = torch.complex(
            torch.randn(B, generator=g, dtype=torch.float64), torch.randn(B, generator=g, dtype=torch.float64)
        )
        d1 = sr_direction(O, e, diag_shift=1e-3, method="minsr")
        d2 = sr_direction(O, e, diag_shift=1e-3, method="cg", cg_tol=1e-14, cg_max_iter=5000)
        assert torch.allclose(d1, d2, rtol=0, atol=1e-10 * float(d1.abs().max()))


def test_learning_rate_schedules_warmup_and_bad_names():
    import pytest

    from physgen.quantum.schedule import scheduled_value

    geo = [scheduled_value(0.1, 0.001, k, 3) for k in range(3)]
    assert [round(math.log10(x), 9) for x in geo] == [-1.0, -2.0, -3.0]
    cos = [scheduled_value(0.1, 0.0, k, 5, "cosine") for k in range(5)]
    assert cos[0] == 0.1 and abs(cos[2] - 0.05) < 1e-15 and cos[4] == 0.0
    assert [scheduled_value(0.1, 0.001, k, 5, "constant") for k in range(5)] == [0.1] * 5
    warm = [scheduled_value(0.1, 0.0, k, 6, "cosine", warmup=2) for k in range(6)]
    assert warm[:3] == [0.05, 0.1, 0.1] and warm[-1] == 0.0  # ramp, then the decay over the last 4 steps
    assert scheduled_value(0.1, 0.001, 0, 1) == 0.1  # a one-step run keeps the initial value
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        VMC(TransverseFieldIsing(Chain(4)), RNNWavefunction(4, hidden=4), lr_schedule="linear")
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        VMC(TransverseFieldIsing(Chain(4)), RNNWavefunction(4, hidden=4), warmup_steps=-1)


def test_the_driver_follows_the_cosine_schedule():
    torch.manual_seed(0)
    v = VMC(
        TransverseFieldIsing(Chain(4)),
        RNNWavefunction(4, hidden=4),
        n_samples=32,
        lr=0.02,
        lr_final=0.0,
        lr_schedule="cosine",
        warmup_steps=1,
    )
    seen = []
    step = v.step
    v.step = lambda: (seen.append(v._lr_now), step())[1]
    v.run(4)
    assert [round(x, 12) for x in seen] == [0.02, 0.02, 0.01, 0.0]


def test_toml_config_carries_the_schedule(tmp_path):
    """``[vmc] lr_schedule, warmup_steps, diag_shift_final, max_grad_norm`` reach the driver; a bad name is a
    config error that lists the allowed ones."""
    from physgen.cli.vmc import run_vmc_config
    from physgen.config import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[lattice]\nn = 4\n[model]\nhidden = 4\n"
        '[vmc]\nn_steps = 6\nn_samples = 64\nlr = 0.02\nlr_final = 0.002\nlr_schedule = "cosine"\n'
        "warmup_steps = 2\ndiag_shift_final = 1e-4\nmax_grad_norm = 1.0\neval_samples = 256\n"
    )
    loaded = load_config(cfg, "vmc").vmc
    assert (loaded.lr_schedule, loaded.warmup_steps, loaded.diag_shift_final, loaded.max_grad_norm) == (
        "cosine",
        2,
        1e-4,
        1.0,
    )
    summary = run_vmc_config(str(cfg), str(tmp_path / "out"))
    assert summary["steps"] == 6 and summary["config"]["vmc"]["lr_schedule"] == "cosine"
    cfg.write_text('[vmc]\nlr_schedule = "linear"\n')
    with pytest.raises(ValueError, match=r"lr_schedule.*geometric.*cosine.*constant"):
        load_config(cfg, "vmc")
