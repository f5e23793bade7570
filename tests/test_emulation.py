"""physgen emulate: simulate -> train an emulator -> compare with the simulator -> report."""

from __future__ import annotations

import json

import pytest
import torch

import physgen
from physgen.emulation import compare_with_simulator, emulate
from physgen.emulator_comparison import compare_fields_at

CONFIG = """
[simulator]
name = "gaussian_linear"
options = { dim = 2 }
[simulation]
n = 1000
seed = 0
batch_size = 1000
[model]
name = "nsf"
options = { transforms = 2, hidden_features = [32, 32] }
[train]
max_epochs = 3
batch_size = 128
[emulate]
num_theta = 2
num_per_theta = 100
"""


def test_emulate_writes_a_report_and_skips_what_is_done(tmp_path):
    cfg = tmp_path / "emu.toml"
    cfg.write_text(CONFIG.replace("batch_size = 128", "batch_size = 128\nnum_threads = 1"))
    lines: list[str] = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = emulate(cfg, tmp_path / "run", log=lines.append)
    finally:
        torch.set_num_threads(before)
    for name in ("emulator.safetensors", "train_history.json", "report/report.html", "report/metrics.json"):
        assert (tmp_path / "run" / name).exists(), name
    metrics = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())["metrics"]
    assert len(metrics["per_theta"]) == 2 and 0.0 <= metrics["median"]["c2st"] <= 1.0
    assert metrics["cost"]["emulator_seconds_per_sample"] > 0
    assert metrics["cost"]["torch_threads"] == 1  # [train] num_threads holds for the comparison's timing too
    assert report.metrics["median"] == metrics["median"]
    emulator = physgen.load(tmp_path / "run" / "emulator.safetensors")
    assert isinstance(emulator, physgen.Emulator)
    assert any(line.startswith("compare: simulated 100 x 2 θ in ") for line in lines), lines
    assert "compare: scored θ 2/2" in lines
    drawn: list[int] = []  # progress after each block, the same draws as without it
    x = emulator.sample(8000, torch.zeros(3, 2), seed=1, progress=drawn.append)
    assert drawn[-1] == 8000 and drawn == sorted(drawn) and len(drawn) > 1
    assert torch.equal(x, emulator.sample(8000, torch.zeros(3, 2), seed=1))
    lines.clear()
    emulate(cfg, tmp_path / "run", log=lines.append)
    assert lines == ["simulate: skipped (up to date)", "train: skipped (up to date)", "compare: skipped (up to date)"]
    cfg.write_text(cfg.read_text().replace("num_per_theta = 100", "num_per_theta = 60"))
    from physgen.config import ConfigError

    with pytest.raises(ConfigError, match=r"\[emulate\] num_per_theta: 100 -> 60"):
        emulate(cfg, tmp_path / "run")
    lines.clear()
    emulate(cfg, tmp_path / "run", log=lines.append, restart=True)
    assert lines[:2] == ["simulate: skipped (up to date)", "train: skipped (up to date)"] and "compare: done" in lines[-1]


def test_a_larger_time_budget_resumes_the_emulator_training(tmp_path):
    cfg, run = tmp_path / "emu.toml", tmp_path / "run"
    budget = CONFIG.replace("max_epochs = 3", "max_epochs = 100000\npatience = 100000")
    cfg.write_text(budget.replace("[emulate]", "max_time = 1.0\n[emulate]"))
    emulate(cfg, run)
    first = json.loads((run / "train_history.json").read_text())
    assert first["stopped"] == "max_time"
    cfg.write_text(cfg.read_text().replace("max_time = 1.0", "max_time = 2.0"))
    lines: list[str] = []
    emulate(cfg, run, log=lines.append)
    second = json.loads((run / "train_history.json").read_text())
    assert "train: resuming an unfinished run" in lines and "compare: done" in lines[-1]
    assert len(second["history"]) > len(first["history"]) and second["history"][0] == first["history"][0]


def test_a_simulator_compared_with_itself_passes_the_field_statistics():
    from simulators.cosmology import LognormalField

    sim = LognormalField(n=16, box_size=128.0)
    theta = torch.tensor([0.3, 0.8])
    g = torch.Generator().manual_seed(0)
    a = sim.simulate(theta.expand(200, -1), generator=g)
    b = sim.simulate(theta.expand(200, -1), generator=g)
    metrics, figures = compare_fields_at(a, b, theta=theta, simulator=sim)
    assert metrics["power_spectrum"]["chi2_dof"] < 3.0
    assert metrics["power_spectrum"]["median_abs_ratio_dev"] < 0.1
    assert figures and all(v[:4] == b"\x89PNG" for v in figures.values())


def test_point_sets_are_compared_with_the_simulators_known_intensity():
    """ThomasProcess has mean_intensity: the report's ĝ is unbiased (the simulator against its analytic g(r)
    within errors); normalised by each set's own N instead it is low by 1 / (1 + 1 / κV), resolved here."""
    from physgen.emulator_comparison import compare_point_sets_at
    from simulators.galaxies import ThomasProcess

    sim = ThomasProcess(1.0, 2, bounds={"kappa": (15.0, 30.0), "mu": (2.0, 5.0), "sigma": (0.02, 0.05)})
    theta = torch.tensor([15.0, 4.0, 0.03])
    g = torch.Generator().manual_seed(0)
    a, b = (sim.simulate(theta.expand(300, -1), generator=g).float() for _ in range(2))
    known, _ = compare_point_sets_at(a, b, theta=theta, simulator=sim)
    own_n, _ = compare_point_sets_at(a, b, theta=theta, simulator=sim, intensity=None)
    assert known["pair_correlation"]["sim_vs_true"]["p_value"] > 1e-3
    assert own_n["pair_correlation"]["sim_vs_true"]["p_value"] < 1e-6
    assert known["pair_correlation"]["emu_vs_sim"]["p_value"] > 1e-3


def test_comparison_sizes_are_checked():
    class _NoKind:
        prior = None

    class _Emu:
        x_shape = (4, 4)

    with pytest.raises(ValueError, match="num_per_theta >= 2"):
        compare_with_simulator(_Emu(), _NoKind(), num_per_theta=1)
    with pytest.raises(ValueError, match="set the simulator's x_kind"):
        compare_with_simulator(_Emu(), _NoKind())


def test_downstream_posteriors_on_emulated_and_simulated_data_are_compared(tmp_path):
    cfg = tmp_path / "emu.toml"
    cfg.write_text(CONFIG.replace("num_per_theta = 100",
                                  "num_per_theta = 50\ndownstream = { num_observations = 2, num_samples = 200, "
                                  "max_epochs = 3 }"))
    report = emulate(cfg, tmp_path / "run")
    d = report.metrics["downstream"]
    assert len(d["c2st"]) == 2 and 0.0 <= d["c2st_mean"] <= 1.0 and d["num_train"] == 1000


def test_emulate_command_refuses_a_bad_config_in_one_line(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.replace("num_theta = 2", "num_theta = 0"))
    out = subprocess.run([sys.executable, "-m", "physgen.cli", "emulate", str(cfg), "--run-dir", str(tmp_path / "r")],
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "num_theta" in out.stderr


def test_theta_outside_the_training_range_warns_that_the_emulator_extrapolates(tmp_path):
    torch.manual_seed(0)
    theta = torch.rand(300, 2)
    data = physgen.SimulationSet(theta, theta + 0.1 * torch.randn(300, 2))
    emu = physgen.fit_emulator(data, model="nsf", model_options={"transforms": 1, "hidden_features": [16]},
                               max_epochs=1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emu.sample(3, torch.tensor([0.5, 0.5]))  # inside: silent
    with pytest.warns(UserWarning, match="outside the training θ range.*extrapolates"):
        emu.sample(3, torch.tensor([0.5, 3.0]))
    with pytest.warns(UserWarning, match="extrapolates"):
        emu.log_prob(torch.zeros(2), torch.tensor([-2.0, 0.5]))
    emu.save(tmp_path / "e.safetensors")
    again = physgen.load(tmp_path / "e.safetensors")
    assert again.theta_range == emu.theta_range
    with pytest.warns(UserWarning, match="extrapolates"):
        again.sample(1, torch.tensor([0.5, 3.0]))


def test_emulation_progress_lines_say_what_is_drawn_and_the_time_left():
    from physgen.emulator_comparison import _eta_lines

    lines: list[str] = []
    progress = _eta_lines(100, 20, lines.append, every=0.0)
    progress(25)
    progress(100)  # the end is said by the caller, with the total time
    assert len(lines) == 1 and lines[0].startswith("emulated 25/100 per θ (x 20 θ) in ") and "s left" in lines[0]
    quiet: list[str] = []
    _eta_lines(100, 20, quiet.append)(25)  # within the first minute: nothing
    assert quiet == []


def test_medians_over_an_even_number_of_theta_average_the_two_middle_values():
    from physgen.emulator_comparison import _medians

    per_theta = [{"theta": [0.0], "a": {"b": v}, "c": v * 10} for v in (0.10, 0.31, 0.28, 0.17)]
    per_theta.append({"theta": [0.0], "a": {"b": float("nan")}, "c": float("nan")})
    assert _medians(per_theta) == pytest.approx({"a.b": 0.225, "c": 2.25})


def test_the_field_noise_floor_example_scores_the_simulator_against_itself_within_its_errors():
    """examples/emulate/field_noise_floor.py: two independent simulated sets agree within their scatter."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "emulate" / "field_noise_floor.py"
    spec = importlib.util.spec_from_file_location("field_noise_floor", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    floor = module.noise_floor(3, 100)
    assert set(floor) == set(module.KEYS)
    assert floor["power_spectrum.chi2_dof"] < 3.0 and floor["pdf.chi2_dof"] < 3.0
    assert floor["power_spectrum.median_abs_ratio_dev"] < 0.06
