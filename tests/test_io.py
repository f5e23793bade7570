import pickle

import pytest
import torch

from physgen.io import CheckpointError, load_file, save_file


def test_roundtrip(tmp_path):
    t = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    save_file(tmp_path / "f.safetensors", t, kind="thing", config={"x": [1, 2]})
    back, meta = load_file(tmp_path / "f.safetensors", kind="thing")
    assert torch.equal(back["a"], t["a"]) and torch.equal(back["b"], t["b"])
    assert meta["config"] == {"x": [1, 2]} and meta["format_version"] == 1


class _Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickle_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(CheckpointError, match="nothing was unpickled"):
        load_file(path)
    assert not (tmp_path / "PWNED").exists()


def test_corrupted_and_foreign_files(tmp_path):
    from safetensors.torch import save_file as st_save

    good = tmp_path / "good.safetensors"
    save_file(good, {"a": torch.randn(100)}, kind="thing", config={})
    data = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_file(tmp_path / "trunc.safetensors")
    (tmp_path / "short").write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="too short"):
        load_file(tmp_path / "short")
    st_save({"a": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="foreign"):
        load_file(tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="holds a 'thing'"):
        load_file(good, kind="posterior")
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "missing.safetensors")
