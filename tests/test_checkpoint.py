"""physgen.train.checkpoint: the one checkpoint format of fit and VMC (round trips, RNG states, old formats)."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from physgen.io import CheckpointError, load_file, save_file
from physgen.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint

DATA = Path(__file__).parent / "data"


def _draws(gen=None, device="cpu"):
    return torch.rand(5, generator=gen, device=device)


def test_rng_states_round_trip(tmp_path):
    """The global CPU RNG, every CUDA device's RNG (when there is one) and explicit generators come back
    exactly: the draws after a restore repeat the draws after the save."""
    torch.manual_seed(123)
    gen = torch.Generator().manual_seed(7)
    _draws(), _draws(gen)  # move the states away from their seeds
    cuda = torch.cuda.is_available()
    gens = {"cpu": gen}
    if cuda:
        gens["cuda"] = torch.Generator(device="cuda").manual_seed(9)
        _draws(device="cuda")
    path = save_checkpoint(tmp_path / "c.safetensors", kind="checkpoint", generators=gens)
    expected = {"global": _draws(), "gen": _draws(gen)}
    if cuda:
        expected["global_cuda"] = _draws(device="cuda")
        expected["gen_cuda"] = _draws(gens["cuda"], "cuda")
    torch.manual_seed(0)  # scramble everything
    gen.manual_seed(0)
    if cuda:
        gens["cuda"].manual_seed(0)
    ck = load_checkpoint(path, kind="checkpoint")
    ck.restore_rng()
    assert ck.restore_generator("cpu", gen)
    assert torch.equal(_draws(), expected["global"]) and torch.equal(_draws(gen), expected["gen"])
    if cuda:
        assert "rng.cuda.0" in ck.tensors and ck.restore_generator("cuda", gens["cuda"])
        assert torch.equal(_draws(device="cuda"), expected["global_cuda"])
        assert torch.equal(_draws(gens["cuda"], "cuda"), expected["gen_cuda"])
    assert not ck.restore_generator("missing", gen)


def test_modules_optimizers_and_schedulers_round_trip(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1)
    for _ in range(3):
        loss = net(torch.randn(8, 3)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss.item())
    path = save_checkpoint(tmp_path / "c.safetensors", kind="checkpoint", modules={"model": net},
                           optimizers={"main": opt}, schedulers={"main": sched}, config={"note": [1, 2]}, rng=False)
    net2 = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1.0)
    sched2 = torch.optim.lr_scheduler.ReduceLROnPlateau(opt2, patience=1)
    ck = load_checkpoint(path, kind="checkpoint")
    assert ck.config == {"note": [1, 2]} and "rng.cpu" not in ck.tensors
    ck.restore_module("model", net2)
    ck.restore_optimizer("main", opt2)
    ck.restore_scheduler("main", sched2)
    for k, v in net.state_dict().items():
        assert torch.equal(v, net2.state_dict()[k])
    for p, q in zip(net.parameters(), net2.parameters()):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][key], opt2.state[q][key])
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert sched2.state_dict() == sched.state_dict()
    with pytest.raises(CheckpointError, match="no state of optimizer 'other'"):
        ck.restore_optimizer("other", opt2)
    with pytest.raises(CheckpointError, match="holds a 'checkpoint', not a 'vmc'"):
        load_checkpoint(path, kind="vmc")


def test_reserved_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="module name"):
        save_checkpoint(tmp_path / "c", kind="checkpoint", modules={"rng": nn.Linear(1, 1)})
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "c", kind="checkpoint", config={"checkpoint": 1})


def test_format1_vmc_checkpoint_loads_and_format1_fit_checkpoint_is_refused():
    from physgen.quantum.hamiltonians import TransverseFieldIsing
    from physgen.quantum.lattice import Chain
    from physgen.quantum.rnn import RNNWavefunction
    from physgen.quantum.vmc import VMC

    old = DATA / "vmc_checkpoint_format1.safetensors"
    tensors, _ = load_file(old)
    v = VMC(TransverseFieldIsing(Chain(4)), RNNWavefunction(4, hidden=4), n_samples=32, optimizer="adam", lr=0.01)
    cfg = v.load_checkpoint(old)
    assert v.step_count == cfg["step"] == 2 and len(v.history) == 2
    for k, p in v.model.state_dict().items():
        assert torch.equal(p, tensors[f"model.{k}"])
    p0 = next(v.model.parameters())
    assert torch.equal(v._adam.state[p0]["exp_avg"], tensors["adam.0.exp_avg"])
    assert torch.equal(v.generator.get_state(), tensors["generator_state"])
    v.run(1)
    assert v.step_count == 3

    with pytest.raises(CheckpointError, match="format 1") as err:
        load_checkpoint(DATA / "checkpoint_format1_fit" / "checkpoint.safetensors", kind="checkpoint")
    assert "resume=False" in str(err.value)


def test_a_newer_checkpoint_format_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", kind="checkpoint", modules={"m": nn.Linear(1, 1)})
    tensors, meta = load_file(path)
    cfg = meta["config"]
    cfg["checkpoint"]["format"] = CHECKPOINT_FORMAT + 1
    save_file(path, tensors, kind="checkpoint", config=json.loads(json.dumps(cfg)))
    with pytest.raises(CheckpointError, match=f"checkpoint format {CHECKPOINT_FORMAT + 1}"):
        load_checkpoint(path, kind="checkpoint")
