"""Fault injection, part 2: bad values and inputs (config domains, fit arguments, an empty config, sample and
log_prob inputs), a changed setting and one-line errors on the command line, a full disk and a read-only
folder, repr and the umask. Part 1 (tests/test_faults.py): writers, kills, damaged data and files, changed
settings, Ctrl-C.
"""

import copy
import math
import os
import time

import pytest
import torch

import physgen
import physgen.checks as C
from physgen.checks import FIT_DOMAINS
from physgen.cli import main
from physgen.config import ConfigError, load_config
from physgen.data import SimulationSet, simulate
from physgen.inference import SamplingError
from physgen.train import fit

from test_data import Toy
from test_faults import Regressor, config, regression_data


# --------------------------------------------------------------------------------------- value domains
@pytest.mark.parametrize("section, key, value", [
    ("train", "clip_norm", "-1"), ("train", "batch_size", "-1"), ("train", "max_epochs", "-3"),
    ("train", "lr", "-0.1"), ("train", "lr", "nan"), ("train", "ema", "1.5"), ("train", "validation_fraction", "0"),
    ("train", "validation_fraction", "1.0"), ("train", "patience", "-1"), ("train", "weight_decay", "-1e-3"),
    ("train", "max_time", "-5"), ("train", "seed", "-1"), ("simulation", "n", "0"), ("simulation", "batch_size", "0"),
    ("sample", "n", "-5"), ("train", "schedule", '"linear"'),
])
def test_a_value_outside_its_domain_names_the_key(tmp_path, section, key, value):
    cfg = config(tmp_path)
    cfg.write_text(_dedupe(cfg.read_text().replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n", 1)))
    with pytest.raises(ConfigError, match=rf"cfg.toml: \[{section}\] {key} = .*(must be|allowed|finite)"):
        load_config(cfg, "train")


def _dedupe(text: str) -> str:
    """The first value of each key in each table (a test config with a key set twice is invalid TOML)."""
    out, seen, table = [], set(), ""
    for line in text.splitlines():
        if line.startswith("["):
            table = line
        key = line.split("=")[0].strip() if "=" in line and not line.startswith("[") else None
        if key is not None and (table, key) in seen:
            continue
        if key is not None:
            seen.add((table, key))
        out.append(line)
    return "\n".join(out) + "\n"


def test_a_bad_value_stops_the_cli_before_any_simulation(tmp_path, capsys):
    cfg = config(tmp_path)
    cfg.write_text(cfg.read_text().replace("patience = 1000", "patience = 1000\nclip_norm = -1"))
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("physgen: config error:") and "[train] clip_norm = -1.0" in err[0]
    assert not (tmp_path / "run" / "simulations").exists()


@pytest.mark.parametrize("name, value", [
    ("batch_size", -1), ("batch_size", 0), ("lr", -1.0), ("lr", math.nan), ("max_epochs", -3), ("patience", 0),
    ("clip_norm", -1.0), ("clip_norm", 0.0), ("validation_fraction", 1.0), ("ema", 1.0), ("weight_decay", -0.1),
    ("min_delta", -1.0), ("max_time", 0.0), ("seed", -1), ("warm_start_rows", 0),
])
def test_fit_checks_the_same_domains_naming_the_argument(name, value):
    assert name in FIT_DOMAINS
    with pytest.raises(ValueError, match=rf"^{name} must be .*; got"):
        fit(Regressor(), regression_data(), progress=False, **{name: value})


def test_an_empty_config_is_an_error_showing_a_minimal_one(tmp_path, capsys):
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    for command in ("simulate", "train", "run"):
        with pytest.raises(ConfigError, match=r"empty\.toml: the file is empty.*minimal config: \[simulator\] name"):
            load_config(empty, command)
    assert main(["simulate", str(empty), "--run-dir", str(tmp_path / "run")]) == 2
    assert "minimal config" in capsys.readouterr().err
    assert not (tmp_path / "run" / "simulations").exists()


# ------------------------------------------------------------------------------ inputs of sample and log_prob
@pytest.fixture(scope="module")
def posteriors():
    sims = simulate(Toy(), 400, seed=0)
    out = {}
    for model, options in [("nsf", {"transforms": 1}), ("maf", {}), ("flow_matching", {}), ("diffusion", {})]:
        out[model] = physgen.fit_posterior(sims, model=model, max_epochs=1, model_options=options)
    out["nsf_none"] = physgen.fit_posterior(sims, model="nsf", max_epochs=1, transform="none",
                                            model_options={"transforms": 1})
    return sims, out


def test_n_zero_is_an_empty_tensor_for_every_family(posteriors):
    sims, posts = posteriors
    for name, post in posts.items():
        assert post.sample(0, sims.x[0]).shape == (0, 2), name
        assert post.sample(0, sims.x[:3]).shape == (0, 3, 2), name
    emu = physgen.fit_emulator(sims, model="nsf", max_epochs=1, model_options={"transforms": 1})
    assert emu.sample(0, sims.theta[0]).shape == (0, 3) and emu.sample(0, sims.theta[:4]).shape == (0, 4, 3)


def test_bad_n_and_non_finite_x_are_immediate_errors(posteriors):
    sims, posts = posteriors
    post = posts["nsf_none"]
    for n, err in [(-1, ValueError), (2.0, ValueError), (True, TypeError), ("3", TypeError)]:
        with pytest.raises(err, match="n must be an int >= 0"):
            post.sample(n, sims.x[0])
    for bad in (math.nan, math.inf, -math.inf):
        x = sims.x[0].clone()
        x[1] = bad
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=r"x holds NaN or inf at 1 \(of shape \(3,\)\)"):
            post.sample(10, x)
        with pytest.raises(ValueError, match="x holds NaN or inf"):
            post.log_prob(sims.theta[:1], x)
        assert time.perf_counter() - t0 < 1
    with pytest.raises(ValueError, match="theta holds NaN or inf"):
        post.log_prob(torch.tensor([math.nan, 0.0]), sims.x[0])


def test_a_huge_request_is_refused_with_its_size(posteriors, monkeypatch):
    sims, posts = posteriors
    with pytest.raises(ValueError, match=r"n=10000000000 .* 74.5 GiB .* budget"):
        posts["nsf"].sample(10**10, sims.x[0])
    monkeypatch.setattr(C, "MAX_SAMPLE_BYTES", 1000)
    with pytest.raises(ValueError, match="budget"):
        posts["nsf"].sample(200, sims.x[:2])


def test_an_x_far_outside_the_training_data_warns_and_never_spins(posteriors):
    sims, posts = posteriors
    for name in ("nsf", "nsf_none"):
        t0 = time.perf_counter()
        with pytest.warns(UserWarning, match="far outside the training data"):
            try:
                posts[name].sample(5, sims.x[0] * 1e6)
            except SamplingError as err:  # rejection sampling gives up, saying why
                assert "standard deviations from the training mean" in str(err)
        assert time.perf_counter() - t0 < 20


def test_nan_weights_raise_at_once_and_log_prob_never_returns_nan(posteriors):
    sims, posts = posteriors
    for name in ("nsf", "nsf_none"):
        post = copy.deepcopy(posts[name])
        with torch.no_grad():
            next(post.model.parameters()).fill_(math.nan)
        t0 = time.perf_counter()
        with pytest.raises(SamplingError, match="weights or standardisation hold NaN/inf"):
            post.sample(10, sims.x[0])
        with pytest.raises(SamplingError, match="log_prob is NaN"):
            post.log_prob(sims.theta[:4], sims.x[:4])
        assert time.perf_counter() - t0 < 5


def test_nan_training_data_is_an_error_naming_the_rows():
    sims = simulate(Toy(), 200, seed=0)
    x = sims.x.clone()
    x[7, 1] = math.nan
    x[42, 0] = math.inf
    bad = SimulationSet(sims.theta, x, dict(sims.meta))
    with pytest.raises(ValueError, match=r"NaN or inf in rows 7, 42 of"):
        physgen.fit_posterior(bad, model="nsf", max_epochs=1)


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_errors_are_one_line_with_their_exit_status(tmp_path, capsys, monkeypatch):
    cfg = config(tmp_path)
    assert main(["sample", str(cfg), "--run-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train first" in err[0]
    with pytest.raises(SystemExit) as usage:
        main(["sample", str(cfg), "--run-dir", str(tmp_path / "none"), "-n", "0"])
    assert usage.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument -n: invalid positive_int value: '0'" in err[0]
    bad = tmp_path / "bad.toml"
    bad.write_text("[simulator\n")
    assert main(["simulate", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    import physgen.cli.sbi as sbi

    def boom(args):
        raise KeyError("an internal bug")

    monkeypatch.setattr(sbi, "cmd_simulate", boom)
    assert main(["simulate", str(cfg), "--run-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: KeyError" in err[0] and "--debug" in err[0]
    with pytest.raises(KeyError):
        main(["simulate", str(cfg), "--run-dir", str(tmp_path / "r"), "--debug"])


def test_repr_of_public_objects(tmp_path, posteriors):
    sims, posts = posteriors
    lazy = simulate(Toy(), 100, seed=0, path=tmp_path, lazy=True)
    objects = [sims, lazy, lazy.x, posts["nsf"], posts["flow_matching"], posts["nsf"].fit_result, FIT_DOMAINS["lr"],
               physgen.fit_emulator(sims, model="nsf", max_epochs=1, model_options={"transforms": 1}),
               load_config(config(tmp_path), "train"), ConfigError("x", "f.toml"), Toy().prior]
    for obj in objects:
        text = repr(obj)
        assert text and len(text) < 20_000, type(obj)
    assert repr(sims).startswith("SimulationSet(n=400, theta=(400, 2), x=(400, 3)")
    assert "theta_dim=2, x_shape=(3,)" in repr(posts["nsf"])


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        simulate(Toy(), 200, seed=0, path=tmp_path / "s")
        fit(Regressor(), regression_data(), max_epochs=1, progress=False, checkpoint_dir=tmp_path / "c")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 5
    for p in files:
        assert p.stat().st_mode & 0o027 == 0, (p, oct(p.stat().st_mode))


def test_cli_train_refuses_a_changed_lr_and_restarts_on_request(tmp_path, capsys):
    cfg = config(tmp_path)
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    cfg = config(tmp_path, lr=0.01)
    capsys.readouterr()
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lr: 0.001 -> 0.01" in err[0] and "--restart" in err[0]
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet", "--restart"]) == 0
    cfg = config(tmp_path, lr=0.01, n=800)  # another campaign in the store: refused naming n, then replaced
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 1
    assert "n_requested: stored 600, requested 800" in capsys.readouterr().err
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet", "--restart"]) == 0


def test_a_full_disk_and_a_read_only_folder(tmp_path, monkeypatch, capsys):
    import physgen.store as S

    real, calls = S.atomic_write, []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "atomic_write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        simulate(Toy(), 1000, seed=3, batch_size=100, path=tmp_path / "s")
    monkeypatch.setattr(S, "atomic_write", real)  # space freed: the same call resumes exactly
    resumed = simulate(Toy(), 1000, seed=3, batch_size=100, path=tmp_path / "s")
    assert torch.equal(resumed.x, simulate(Toy(), 1000, seed=3, batch_size=100).x)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(S, "atomic_write", read_only)
    cfg = config(tmp_path)
    assert main(["simulate", str(cfg), "--run-dir", str(tmp_path / "ro")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0]
