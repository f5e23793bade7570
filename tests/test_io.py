import os
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


def test_atomic_write_bytes_and_text(tmp_path):
    from physgen.io import atomic_write

    target = tmp_path / "sub" / "f.txt"
    atomic_write(target, "héllo")
    assert target.read_text(encoding="utf-8") == "héllo"
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "mode", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "mode").stat().st_mode & 0o777 == 0o644  # like open(), not mkstemp's 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mode", "sub"]  # no temporary files left


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    from physgen.io import atomic_write

    target = tmp_path / "f.safetensors"
    save_file(target, {"a": torch.zeros(3)}, kind="thing", config={})
    before = target.read_bytes()

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_file(target, {"a": torch.ones(3)}, kind="thing", config={})
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.safetensors"]
