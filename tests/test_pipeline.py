"""``physgen run`` / ``physgen validate`` and ``physgen.validate``: outputs, skipped and re-run stages, a killed
run that resumes, and the bad inputs (an unconverged reference, no likelihood, a misspecified observation)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import physgen
from physgen.config import ConfigError
from simulators.sbibm import TwoMoons

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[simulator]
name = "{simulator}"

[simulation]
n = {n}
seed = 0
batch_size = 250

[model]
name = "nsf"
options = {{ transforms = 2, hidden_features = [16, 16] }}
transform = "unconstrained"

[train]
max_epochs = {epochs}
patience = 1000
batch_size = 100

[validate]
num_test = 100
num_posterior_samples = 100
num_reference_samples = 200
reference = "{reference}"
mcmc = {{ max_steps = 20 }}
"""


def write(tmp_path, *, n=300, epochs=3, reference="auto", simulator="two_moons"):
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(n=n, epochs=epochs, reference=reference, simulator=simulator))
    return path


def cli(*args, timeout=300):
    out = subprocess.run([sys.executable, "-m", "physgen.cli", *map(str, args)], capture_output=True, text=True,
                         cwd=ROOT, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def stages(stdout):
    return [line for line in stdout.splitlines() if line.split(":")[0] in ("simulate", "train", "validate")]


def test_run_writes_outputs_skips_when_done_and_reruns_what_changed(tmp_path):
    config, run = write(tmp_path), tmp_path / "run"
    out = cli("run", config, "--run-dir", run)
    assert [s for s in stages(out) if "done" in s].__len__() == 3, out
    report = run / "report"
    for name in ("report.html", "metrics.json", "posterior_samples.nc", "reference_samples.nc", "sbc_ranks.png",
                 "coverage.png", "tarp.png", "pair_plot_0.png", "training_curves.png"):
        assert (report / name).is_file(), name
    assert (run / "posterior.safetensors").is_file() and (run / "config.toml").is_file()
    # the reference was forced not to converge (max_steps = 20, 200 draws): said at the top, no C2ST against it
    summary = json.loads((report / "metrics.json").read_text())
    obs = summary["metrics"]["observations"][0]
    assert obs["reference"]["converged"] is False
    assert isinstance(obs["c2st"], str) and obs["c2st"].startswith("withheld") and "mmd" not in obs
    assert summary["warnings"][0].startswith("Observation 0: the MCMC reference did not converge (R-hat")
    page = (report / "report.html").read_text()
    assert page.index("did not converge") < page.index("<h2>Metrics</h2>")
    assert "warning: Observation 0: the MCMC reference did not converge" in out
    html_mtime = (report / "report.html").stat().st_mtime_ns

    # the same command again: every stage is skipped, nothing is rewritten
    t0 = time.perf_counter()
    out = cli("run", config, "--run-dir", run)
    assert stages(out) == ["simulate: skipped (up to date)", "train: skipped (up to date)",
                           "validate: skipped (up to date)"]
    assert time.perf_counter() - t0 < 30
    assert (report / "report.html").stat().st_mtime_ns == html_mtime

    # a changed [train] option is refused, naming it; --restart redoes train and validate, the simulations are kept
    config.write_text(config.read_text().replace("max_epochs = 3", "max_epochs = 4"))
    with pytest.raises(ConfigError, match=r"other settings \(\[train\] max_epochs: 3 -> 4\).*--restart"):
        physgen.run(config, run)
    out = cli("run", config, "--run-dir", run, "--restart")
    assert stages(out)[0] == "simulate: skipped (up to date)"
    assert "train: done" in out and "validate: done" in out
    assert len(json.loads((run / "train_history.json").read_text())["history"]) == 4

    # physgen validate RUN_DIR: re-validates from the run folder's config copy and posterior
    html_mtime = (report / "report.html").stat().st_mtime_ns
    out = cli("validate", run)
    assert "validate: done" in out and (report / "report.html").stat().st_mtime_ns > html_mtime


def test_validate_command_on_a_folder_without_a_run_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "physgen.cli", "validate", str(tmp_path)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("physgen: error: ") and "physgen run" in out.stderr


def test_killed_training_resumes_and_keeps_the_simulations(tmp_path):
    config, run = write(tmp_path, n=1000, epochs=40, reference="none"), tmp_path / "run"
    cmd = [sys.executable, "-m", "physgen.cli", "run", str(config), "--run-dir", str(run), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    ckpt = run / "checkpoints" / "checkpoint.safetensors"
    from physgen.io import load_file

    epochs_before, deadline = 0, time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                epochs_before = len(load_file(ckpt)[1]["config"]["result"]["history"])
            except Exception:
                epochs_before = 0
            if epochs_before >= 3:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= epochs_before < 40, "the run should have been killed mid-training"
    before = load_file(ckpt)[1]["config"]["result"]["history"]
    store_mtime = (run / "simulations").stat().st_mtime_ns
    out = cli("run", config, "--run-dir", run)
    assert stages(out)[:2] == ["simulate: skipped (up to date)", "train: resuming an unfinished run"]
    hist = json.loads((run / "train_history.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == list(range(40))
    assert hist[: len(before)] == before  # the epochs finished before the kill are kept, not redone
    assert (run / "simulations").stat().st_mtime_ns == store_mtime
    assert (run / "report" / "report.html").is_file()


def test_a_larger_time_budget_resumes_training_and_another_budget_redoes_nothing(tmp_path):
    """[train] max_time is a budget, not a setting: stopped at 1 s, a 2-s budget resumes the checkpoint (and
    validates again); a smaller one or a budget that training did not stop at keeps everything."""
    from physgen.config import load_config
    from physgen.run_folder import read_state

    path, run = write(tmp_path, n=300, epochs=100000, reference="none"), tmp_path / "run"

    def go(max_time):
        path.write_text(path.read_text().replace("patience = 1000", f"patience = 1000\nmax_time = {max_time}")
                        if "max_time" not in path.read_text() else
                        "\n".join(f"max_time = {max_time}" if ln.startswith("max_time") else ln
                                   for ln in path.read_text().splitlines()))
        lines = []
        physgen.run(load_config(path, "run"), run, log=lines.append)
        history = json.loads((run / "train_history.json").read_text())
        return lines, history

    lines, first = go(1.0)
    assert first["stopped"] == "max_time" and "validate: running" in lines, lines
    seconds = read_state(run, "train")["seconds"]
    store = (run / "simulations").stat().st_mtime_ns

    lines, second = go(2.0)  # grown after a budget stop: train resumes, validate runs again, simulations kept
    assert "simulate: skipped (up to date)" in lines
    assert any("time budget grew" in ln for ln in lines) and "train: resuming an unfinished run" in lines
    assert "validate: done" in " ".join(lines)
    assert len(second["history"]) > len(first["history"])
    assert second["history"][: len(first["history"])] == first["history"]  # continued, not redone
    assert read_state(run, "train")["seconds"] > seconds + 0.5  # the time of both parts
    assert (run / "simulations").stat().st_mtime_ns == store

    html = (run / "report" / "report.html").stat().st_mtime_ns
    lines, third = go(1.5)  # smaller: nothing is redone
    assert [ln for ln in lines if ln.endswith("(up to date)")] == [
        "simulate: skipped (up to date)", "train: skipped (up to date)", "validate: skipped (up to date)"]
    assert third == second and (run / "report" / "report.html").stat().st_mtime_ns == html
    assert "max_time = 1.5" in (run / "config.toml").read_text()

    # a real change next to the budget is still refused, naming it
    path.write_text(path.read_text().replace("batch_size = 100", "batch_size = 50"))
    with pytest.raises(ConfigError, match=r"\[train\] batch_size: 100 -> 50"):
        go(3.0)


# ------------------------------------------------------------------------------------ in-process checks
class TwoMoonsWithoutLikelihood:
    """two_moons with its likelihood hidden: only prior, x_shape and simulate."""

    def __init__(self):
        self._task = TwoMoons()
        self.prior, self.x_shape = self._task.prior, self._task.x_shape

    def simulate(self, theta, *, generator=None):
        return self._task.simulate(theta, generator=generator)


@pytest.fixture(scope="module")
def trained():
    sim = TwoMoons()
    data = physgen.simulate(sim, 1000, seed=0)
    post = physgen.fit_posterior(data, model="nsf", transform="unconstrained", progress=False, max_epochs=5,
                                 batch_size=100, model_options={"transforms": 2, "hidden_features": [16, 16]})
    return sim, data, post


def test_simulator_without_likelihood_is_validated_by_calibration_only(tmp_path):
    from physgen.config import load_config

    config = write(tmp_path, simulator=f"{__name__}:TwoMoonsWithoutLikelihood")
    report = physgen.run(load_config(config, "run"), tmp_path / "run")
    assert any("Validated by calibration only (the simulator has no log_likelihood" in n for n in report.notes)
    assert "calibration only" in (tmp_path / "run" / "report" / "report.html").read_text()
    assert not (tmp_path / "run" / "report" / "reference_samples.nc").exists()
    assert {"sbc", "coverage", "tarp"} <= set(report.metrics["calibration"])
    assert "reference" not in report.metrics["observations"][0]
    with pytest.raises(ValueError, match="needs a simulator with log_likelihood"):
        physgen.validate(physgen.load(tmp_path / "run" / "posterior.safetensors"), TwoMoonsWithoutLikelihood(),
                         reference="mcmc")


def test_observation_outside_the_training_distribution_warns_with_a_p_value(trained):
    sim, data, post = trained
    x_obs = torch.tensor([[0.1, -0.2], [4.0, -4.0]])
    with pytest.warns(UserWarning, match="far outside the training data"):  # sample's own check, as well
        report = physgen.validate(post, sim, observations=x_obs, num_test=100, num_posterior_samples=100,
                                  reference="none", training_data=data)
    inside, outside = (report.metrics["observations"][k]["misspecification"] for k in (0, 1))
    assert inside["p_value"] > 0.05 and outside["p_value"] < 0.01 and outside["mmd2"] > inside["mmd2"]
    warns = [w for w in report.warnings if "outside the training distribution" in w]
    assert len(warns) == 1 and warns[0].startswith("Observation 1") and "p = " in warns[0]


def test_c2st_only_against_a_converged_reference(trained, monkeypatch):
    """A faked reference sampler: converged -> C2ST and MMD; unconverged -> a top warning and neither."""
    import physgen.mcmc
    from physgen.io import to_inference_data

    sim, _, post = trained
    flags = iter([1, 0])

    def fake_reference(simulator, x_obs, *, num_samples, seed, **options):
        assert "initial" not in options  # the reference does not start from the posterior under test
        draws = post.sample(num_samples, x_obs, seed=seed + 100)
        converged = next(flags)
        return to_inference_data(draws.reshape(4, -1, 2), attrs={
            "converged": converged, "rhat_max": 1.001 if converged else 1.2, "ess_bulk_min": 900.0 if converged else 40.0,
            "ess_tail_min": 800.0, "messages": "" if converged else "R-hat 1.2 > 1.01 for theta_0"})

    monkeypatch.setattr(physgen.mcmc, "reference_posterior", fake_reference)
    report = physgen.validate(post, sim, observations=2, num_test=50, num_posterior_samples=200)
    first, second = report.metrics["observations"]
    assert isinstance(first["c2st"], float) and 0.3 < first["c2st"] < 0.65
    assert "withheld" in second["c2st"] and "mmd" not in second
    assert report.warnings[0].startswith("Observation 1: the MCMC reference did not converge (R-hat 1.2")
    assert "C2ST and MMD against it are withheld" in report.warnings[0]
    assert set(report.samples) == {"posterior_samples", "reference_samples"}
    assert report.samples["reference_samples"].posterior["theta_0"].shape == (4, 500, 2)  # max(S, 2000) draws


def test_a_schedule_cut_short_by_max_time_is_a_report_warning(trained):
    sim, _, post = trained
    history = [{"epoch": e, "train_loss": 1.0, "val_loss": 1.0, "lr": lr, "seconds": 1.0}
               for e, lr in enumerate([1e-3, 9e-4, 7e-4])]
    cut = physgen.validate(post, sim, observations=1, num_test=50, num_posterior_samples=100, reference="none",
                           fit_result={"stopped": "max_time", "best_epoch": 2, "history": history})
    assert cut.metrics["training"]["stopped"] == "max_time"
    assert any("schedule did not finish" in w and "70% of its peak" in w for w in cut.warnings)
    done = physgen.validate(post, sim, observations=1, num_test=50, num_posterior_samples=100, reference="none",
                            fit_result={"stopped": "max_epochs", "best_epoch": 2, "history": history})
    assert done.metrics["training"]["stopped"] == "max_epochs"
    assert not any("schedule did not finish" in w for w in done.warnings)
