"""``physgen train --nproc 2``: simulations in the launcher, then 2 torchrun ranks whose posterior is one
process's; the ``[cluster]`` section is checked like every other."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from physgen.cli import main
from physgen.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = textwrap.dedent("""
    [simulator]
    name = "two_moons"

    [simulation]
    n = 1200
    seed = 0
    batch_size = 300

    [model]
    name = "nsf"
    options = { transforms = 2, hidden_features = [32, 32], bins = 4 }

    [train]
    batch_size = 100
    lr = 0.001
    max_epochs = 2
    ema = 0
    schedule = ""
    seed = 0
""")


def test_train_nproc_2_gives_the_one_process_posterior(tmp_path):
    import physgen

    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "physgen.cli",
            "train",
            str(cfg),
            "--run-dir",
            str(tmp_path / "two"),
            "--nproc",
            "2",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("trained nsf: 2 epochs") == 1  # rank 0 alone reports
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "one"), "--quiet"]) == 0
    two = json.loads((tmp_path / "two" / "train_history.json").read_text())
    one = json.loads((tmp_path / "one" / "train_history.json").read_text())
    val, val_one = ([e["val_loss"] for e in h["history"]] for h in (two, one))
    assert len(val) == 2 and max(abs(a - b) for a, b in zip(val, val_one)) < 1e-5, (val, val_one)
    a = physgen.load(tmp_path / "two" / "posterior.safetensors").state_dict()
    b = physgen.load(tmp_path / "one" / "posterior.safetensors").state_dict()
    assert a.keys() == b.keys() and max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-5


@pytest.mark.parametrize(
    "line, message",
    [
        ("nproc = 0", r"\[cluster\] nproc = 0 is out of range"),
        ("timeout = -1", r"\[cluster\] timeout = -1.0 is out of range: it must be a finite float > 0"),
        (
            "nprocs = 2",
            r"unknown key 'nprocs' in \[cluster\]; allowed keys: scheduler, workers, timeout, retries, nproc",
        ),
    ],
)
def test_cluster_section_checked(tmp_path, line, message):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CONFIG + f"\n[cluster]\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(cfg, "train")


def test_physgen_run_uses_the_cluster_section(tmp_path):
    """``physgen run`` hands its simulations to ``[cluster] scheduler`` (here unreachable: the error says so) and
    refuses ``[cluster] nproc`` > 1 (it trains in one process) instead of ignoring it."""
    from physgen.distributed import ClusterError
    from physgen.pipeline import run

    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CONFIG + '\n[cluster]\nscheduler = "tcp://127.0.0.1:9"\ntimeout = 1\n')
    with pytest.raises(ClusterError, match=r"cannot reach the dask scheduler at tcp://127\.0\.0\.1:9 within 1 s"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "simulations").exists()
    cfg.write_text(CONFIG + "\n[cluster]\nnproc = 2\n")
    with pytest.raises(ConfigError, match=r"\[cluster\] nproc = 2: physgen run trains in one process; .* --nproc N"):
        run(cfg, tmp_path / "run2")
