"""Config files: the one loader, the schema of each command, and config errors as a person sees them.

Through the CLI (a subprocess): every config error of every command is one line on stderr, names the
key, its table and the allowed keys (or the expected type, or the allowed values), has no traceback
and exits with status 2. The loader directly: every problem is a ConfigError. The layering: library
modules never import physgen.config, and the schemas import nothing but the standard library.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from physgen.config import SCHEMAS, ConfigError, RunConfig, TomographyConfig, VMCConfig, load_config

ROOT = Path(__file__).resolve().parents[1]

RUN = """
[simulator]
name = "two_moons"

[simulation]
n = 100
batch_size = 100

[model]
name = "nsf"

[train]
max_epochs = 1

[sample]
n = 10
"""

VMC = """
[lattice]
type = "chain"
n = 4

[hamiltonian]
type = "tfim"

[model]
type = "rnn"
hidden = 4

[vmc]
n_steps = 2
n_samples = 16
"""

TOMOGRAPHY = """
name = "t"

[state]
kind = "ghz"
n_sites = 3

[measurement]
z_shots = 50

[model]
kind = "rnn"

[model.options]
hidden = 4

[train]
epochs = 1
progress = false
"""

BASE = {"simulate": RUN, "train": RUN, "sample": RUN, "vmc": VMC, "tomography": TOMOGRAPHY}

# command -> (an edit that adds an unknown key, its table, a few of the allowed keys)
UNKNOWN = {
    "simulate": (("batch_size = 100", "batch_size = 100\nseeed = 1"), "[simulation]", "n, seed, batch_size"),
    "train": (("max_epochs = 1", "max_epochs = 1\nlrr = 0.1"), "[train]", "batch_size, lr, weight_decay"),
    "sample": (("[sample]\nn = 10", "[sample]\nobs = 1"), "[sample]", "n, observation, observation_seed, seed"),
    "vmc": (("n_steps = 2", "n_steps = 2\nlearning_rate = 0.1"), "[vmc]", "optimizer, lr, lr_final"),
    "tomography": (("z_shots = 50", "z_shots = 50\nshots = 5"), "[measurement]", "z_shots, scheme, n_bases"),
}
# command -> (an edit that gives a key a value of the wrong type, table and key, expected type)
WRONG_TYPE = {
    "simulate": (("n = 100", 'n = "many"'), "[simulation] n", "int"),
    "train": (("max_epochs = 1", "max_epochs = 1.5"), "[train] max_epochs", "int"),
    "sample": (("[sample]\nn = 10", "[sample]\nn = true"), "[sample] n", "int"),
    "vmc": (("hidden = 4", 'hidden = "4"'), "[model] hidden", "int"),
    "tomography": (("epochs = 1", "epochs = [1]"), "[train] epochs", "int"),
}


def _write(tmp_path: Path, command: str, edit: tuple[str, str] | None = None) -> Path:
    text = BASE[command]
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    path = tmp_path / f"{command}.toml"
    path.write_text(text)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "physgen.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def _assert_one_line_config_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("physgen: config error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.mark.parametrize("command", list(UNKNOWN))
def test_unknown_key_is_one_line_naming_key_table_and_allowed_keys(command, tmp_path):
    edit, table, allowed = UNKNOWN[command]
    path = _write(tmp_path, command, edit)
    key = edit[1].split("\n")[1].split(" =")[0]
    proc = _cli(command, str(path), "--run-dir", str(tmp_path / "run"))
    line = _assert_one_line_config_error(proc, str(path), f"unknown key {key!r} in {table}", "allowed keys: " + allowed)
    assert not (tmp_path / "run").exists(), "nothing runs before the config is checked"
    assert line.endswith(_allowed(command, table))


@pytest.mark.parametrize("command", list(WRONG_TYPE))
def test_wrong_type_is_one_line_naming_key_table_and_type(command, tmp_path):
    edit, key, expected = WRONG_TYPE[command]
    path = _write(tmp_path, command, edit)
    proc = _cli(command, str(path), "--run-dir", str(tmp_path / "run"))
    _assert_one_line_config_error(proc, str(path), f"{key} = ", f"should be of type {expected}; got ")


def _allowed(command: str, table: str) -> str:
    """The keys the schema of ``command`` allows in ``table``, in the loader's order."""
    schema = SCHEMAS[command]
    for part in table.strip("[]").split("."):
        schema = typing.get_type_hints(schema)[part]
    return ", ".join(f.name for f in dataclasses.fields(schema))


def test_missing_file_and_invalid_toml_are_config_errors(tmp_path):
    proc = _cli("vmc", str(tmp_path / "absent.toml"))
    _assert_one_line_config_error(proc, "absent.toml: no such file")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlr = = 1\n")
    for command in ("train", "tomography"):
        proc = _cli(command, str(bad), "--run-dir", str(tmp_path / "run"))
        _assert_one_line_config_error(proc, "bad.toml: not valid TOML: ", "line 2")


def test_values_outside_the_allowed_set_name_the_allowed_values(tmp_path):
    path = _write(tmp_path, "train", ('name = "nsf"', 'name = "nfs"'))
    proc = _cli("train", str(path), "--run-dir", str(tmp_path / "run"))
    _assert_one_line_config_error(proc, "[model] name = 'nfs' is not allowed; allowed: ", "'nsf'", "'flow_matching'")
    path = _write(tmp_path, "simulate", ('name = "two_moons"', 'name = "three_moons"'))
    proc = _cli("simulate", str(path), "--run-dir", str(tmp_path / "run"))
    _assert_one_line_config_error(proc, "[simulator] name = 'three_moons' is not a known simulator", "'two_moons'")
    path = _write(tmp_path, "vmc", ('type = "chain"', 'type = "ring"'))
    _assert_one_line_config_error(_cli("vmc", str(path)), "[lattice] type = 'ring' is not allowed; allowed: 'chain', 'square'")
    path = _write(tmp_path, "tomography", ("[model.options]\nhidden = 4", "[model.options]\nhiden = 4"))
    _assert_one_line_config_error(_cli("tomography", str(path)), "[model.options] not accepted by RNNWavefunction",
                                  "hiden")


def test_bad_values_the_library_rejects_are_one_line(tmp_path):
    """A value the schema cannot know is wrong (the library raises ValueError): one line, exit 2."""
    path = tmp_path / "vmc.toml"
    path.write_text('[lattice]\nn = 5\n[hamiltonian]\ntype = "heisenberg"\n[model]\nhidden = 4\nu1 = true\n')
    proc = _cli("vmc", str(path), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("physgen: error: ") and "even number of sites" in proc.stderr


# -- the loader directly ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, text, message",
    [
        ("train", "[train]\nlrr = 1\n", r"unknown key 'lrr' in \[train\]; allowed keys: batch_size, lr,"),
        ("train", "[extra]\na = 1\n", r"unknown section \[extra\]; allowed sections: simulator, simulation"),
        ("train", "name = 1\n", r"unknown top-level key 'name'; allowed: simulator, simulation"),
        ("train", "train = 1\n", r"train = 1 should be a table \(\[train\]\); got int"),
        ("train", "[train]\nlr = true\n", r"\[train\] lr = True should be of type float; got bool"),
        ("train", "[train]\nbatch_size = 1.0\n", r"\[train\] batch_size = 1.0 should be of type int; got float"),
        ("train", "[model]\noptions = 3\n", r"\[model\] options = 3 should be of type table; got int"),
        ("train", '[model]\ntransform = "log"\n', r"transform = 'log' is not allowed; allowed: 'auto', 'none', 'unc"),
        ("sample", '[sample]\nobservation = "x"\n', r"\[sample\] observation = 'x' should be of type array; got string"),
        ("vmc", "[vmc]\nlr_final = \"x\"\n", r"\[vmc\] lr_final = 'x' should be of type float; got string"),
        ("vmc", "[optim]\nlr = 1\n", r"unknown section \[optim\]; allowed sections: lattice, hamiltonian, model"),
        ("vmc", '[model]\ndtype = "float16"\n', r"\[model\] dtype = 'float16' is not allowed; allowed: 'float32'"),
        ("tomography", "[state]\nn_site = 4\n", r"unknown key 'n_site' in \[state\]; allowed keys: kind, n_sites"),
        ("tomography", "[train]\nepochs = 1.5\n", r"\[train\] epochs = 1.5 should be of type int"),
        ("tomography", '[state]\nkind = "bell"\n', r"allowed: 'tfim', 'ghz', 'w'"),
        ("tomography", "[measurement]\nbases = [\"XZ\", 3]\n", r"bases\[1\] = 3 should be of type string; got int"),
        ("tomography", "[model.option]\nhidden = 1\n", r"unknown key 'option' in \[model\]; allowed keys: kind, options"),
        ("tomography", "[sate]\nkind = 1\n", r"unknown section \[sate\]; allowed sections: state, measurement, model, "
                                             r"train \(and top-level keys: name\)"),
    ],
)
def test_loader_errors_are_config_errors(tmp_path, command, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, command)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert info.value.path == str(path)


def test_loader_file_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", "vmc")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "dir.toml", "vmc")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "bin.toml", "vmc")
    (tmp_path / "bad.toml").write_text("[vmc\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml", "vmc")


def test_loader_types_and_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 1\nmax_time = 2\n")
    cfg = load_config(path, "train")
    assert isinstance(cfg, RunConfig) and cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.simulation == RunConfig().simulation
    path.write_text("[vmc]\nlr_final = 1\n")
    cfg = load_config(path, "vmc")
    assert isinstance(cfg, VMCConfig) and cfg.vmc.lr_final == 1.0 and cfg.vmc.time_limit_s is None
    path.write_text('name = "x"\n[model.options]\nhidden = 3\ndtype = "float64"\n')
    cfg = load_config(path, "tomography")
    assert isinstance(cfg, TomographyConfig) and cfg.model.options == {"hidden": 3, "dtype": "float64"}
    assert set(SCHEMAS) >= {"simulate", "train", "sample", "vmc", "tomography"}


def test_train_fit_options_leave_unset_options_to_the_family():
    from physgen.config.run import TrainSection

    opts = TrainSection().fit_options()
    assert not {"batch_size", "lr", "max_epochs", "patience", "ema", "schedule"} & set(opts)
    assert opts["max_time"] is None and opts["num_threads"] == "auto"
    opts = TrainSection(lr=0.01, ema=0.0, schedule="").fit_options()
    assert opts["lr"] == 0.01 and opts["ema"] is None and opts["schedule"] is None


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("**/*.toml")), ids=lambda p: p.name)
def test_every_example_fits_its_schema(example):
    command = ("run" if example.parent.name == "workflows" else "emulate" if example.parent.name == "emulate"
               else "vmc" if "vmc" in example.name else "tomography" if "tomography" in example.name else "train")
    load_config(example, command)


# -- Python 3.10 and layering -------------------------------------------------------------------


def test_toml_falls_back_to_tomli_and_the_library_needs_no_toml(tmp_path):
    """Without tomllib (Python 3.10) the loader uses tomli; the library itself never reads TOML."""
    path = tmp_path / "c.toml"
    path.write_text("[vmc]\nn_steps = 3\n")
    code = (
        "import sys, tomllib; sys.modules['tomli'] = tomllib; sys.modules['tomllib'] = None\n"
        "from physgen.config import load_config\n"
        "import physgen.config.loader as L; assert L.tomllib.__name__ == 'tomllib' and sys.modules['tomllib'] is None\n"
        f"print(load_config({str(path)!r}, 'vmc').vmc.n_steps)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr
    code = (
        "import sys; sys.modules['tomllib'] = None; sys.modules['tomli'] = None\n"
        "import pkgutil, importlib, physgen\n"
        "for m in pkgutil.walk_packages(physgen.__path__, 'physgen.'):\n"
        "    if m.ispkg and not m.name.startswith(('physgen.config', 'physgen.cli')):\n"
        "        importlib.import_module(m.name)\n"
        "import physgen.quantum.vmc, physgen.quantum.tomography\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr


def _imports(path: Path, top_level: bool = False) -> set[str]:
    """Modules imported by ``path`` (``top_level``: only by statements of the module body, run at import)."""
    names = set()
    tree = ast.parse(path.read_text())
    for node in tree.body if top_level else ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_only_the_cli_and_pipeline_layers_import_config():
    readers = []
    for path in sorted((ROOT / "physgen").rglob("*.py")):
        rel = path.relative_to(ROOT / "physgen").parts
        uses = any(n == "physgen.config" or n.startswith("physgen.config.") for n in _imports(path))
        if rel[0] == "config":
            # physgen.checks (standard library only at import) holds the value domains the API shares with the schemas
            outside = {n for n in _imports(path) if n.split(".")[0] == "physgen" and not n.startswith("physgen.config")
                       and not n.startswith("physgen.checks")}
            assert not outside, f"the schema module {path.name} imports {outside}"
            assert not {n.split(".")[0] for n in _imports(path)} & {"torch", "numpy", "scipy"}
        elif rel == ("checks.py",):
            assert not {n.split(".")[0] for n in _imports(path, top_level=True)} & {"torch", "numpy", "scipy"}
        elif uses:
            readers.append("/".join(rel))
    assert all(r.startswith("cli/") or r in ("pipeline.py", "emulation.py") for r in readers), readers
    assert "cli/__init__.py" in readers
