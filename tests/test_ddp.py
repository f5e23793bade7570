"""Data-parallel training on 2 gloo ranks (CPU): the same weights as one process with the same global batch, a
checkpoint that resumes with another number of ranks, and a rank that dies named, the checkpoint intact."""

import sys
import textwrap

import pytest
import torch

from physgen.distributed.launch import RankFailedError, launch
from physgen.train.checkpoint import load_checkpoint
from physgen.train.ddp import rank_seed

pytest.importorskip("torch.distributed")

# a regression whose loss is deterministic (so 1 and 2 ranks take the same steps); 203 rows: a validation split
# of 20 and 183 training rows, i.e. 9 global batches of 20 and a last one of 3 (uneven over 2 ranks)
SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    from torch import nn
    from physgen.train import fit
    from physgen.train.ddp import process_group


    class Regression(nn.Module):
        def __init__(self, kill_rank=-1, kill_step=-1):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for p in self.parameters():
                    p.copy_(0.3 * torch.randn(p.shape, generator=g))
            self.kill_rank, self.kill_step, self.steps = kill_rank, kill_step, 0

        def loss(self, theta, x):
            if self.training:
                self.steps += 1
                if int(os.environ.get("RANK", "0")) == self.kill_rank and self.steps == self.kill_step:
                    os.kill(os.getpid(), signal.SIGKILL)  # mid-epoch, before this step's gradients
            return ((self.net(x) - theta) ** 2).mean()


    def data():
        g = torch.Generator().manual_seed(1)
        x = torch.randn(203, 3, generator=g)
        return x[:, :2] * 0.5 + 0.1 * torch.randn(203, 2, generator=g), x


    def train(ckpt, epochs, kill_rank=-1, kill_step=-1):
        module = Regression(kill_rank, kill_step)
        fit(module, data(), batch_size=20, lr=0.02, max_epochs=epochs, patience=1000, schedule=None, progress=False,
            checkpoint_dir=ckpt, resume=True, seed=3)
        return module


    if __name__ == "__main__":
        with process_group():
            train(sys.argv[1], *map(int, sys.argv[2:]))
""")


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "ddp_fit.py"
    path.write_text(SCRIPT)
    sys.path.insert(0, str(path.parent))
    yield path
    sys.path.remove(str(path.parent))


def _weights(ckpt_dir):
    ck = load_checkpoint(ckpt_dir / "checkpoint.safetensors", kind="checkpoint")
    return ck.state_dict("model"), ck.config["result"]["history"]


def _max_difference(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_rank_dies_named_checkpoint_intact_same_weights_as_one_process(script, tmp_path):
    """2 ranks from scratch for 20 steps: the weights of one process with the same global batch; then rank 1 dies
    mid-epoch: the error names it, the checkpoint is intact, and the run resumes on 1 rank (another number of
    ranks) to the uninterrupted one-process weights."""
    from ddp_fit import Regression, train

    train(tmp_path / "one_2", 2)
    train(tmp_path / "one_4", 4)
    with pytest.raises(
        RankFailedError,
        match=r"training rank 1 of 2 failed \(killed by SIGKILL\); the other ranks "
        r"were stopped.* last checkpoint .*2 epochs done\) is intact",
    ) as err:
        # rank 1 kills itself at its 25th step: mid-epoch 2 (10 steps an epoch), after the epoch-1 checkpoint
        launch(2, [script, tmp_path / "run", 4, 1, 25], checkpoint=tmp_path / "run" / "checkpoint.safetensors")
    assert err.value.rank == 1 and err.value.exitcode == -9
    two, history = _weights(tmp_path / "run")  # intact: read and checked
    one, history_one = _weights(tmp_path / "one_2")
    assert len(history) == 2 and _max_difference(two, one) < 1e-5  # 20 steps on 2 ranks = 20 steps in one process
    assert abs(history[-1]["val_loss"] - history_one[-1]["val_loss"]) < 1e-6
    assert (two["net.0.weight"] - Regression().net[0].weight).abs().max() > 1e-2  # it trained
    train(tmp_path / "run", 4)  # killed mid-epoch on 2 ranks, resumed on 1
    assert _max_difference(_weights(tmp_path / "run")[0], _weights(tmp_path / "one_4")[0]) < 1e-5


def test_one_rank_checkpoint_resumed_on_two_then_on_one(script, tmp_path):
    from ddp_fit import train

    train(tmp_path / "one_2", 2)
    train(tmp_path / "one_4", 4)
    train(tmp_path / "mixed", 1)  # epoch 0 in one process
    launch(2, [script, tmp_path / "mixed", 2])  # epoch 1 on 2 ranks, from the one-process checkpoint
    assert _max_difference(_weights(tmp_path / "mixed")[0], _weights(tmp_path / "one_2")[0]) < 1e-5
    train(tmp_path / "mixed", 4)  # epochs 2-3 in one process again
    assert _max_difference(_weights(tmp_path / "mixed")[0], _weights(tmp_path / "one_4")[0]) < 1e-5


def test_rank_seeds():
    assert rank_seed(7, 0) == 9  # rank 0 draws as one process (seed + 2)
    seeds = {rank_seed(7, r, e) for r in range(4) for e in range(3)}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)


def test_training_step_modules_refused(monkeypatch):
    """Families that train through their own training_step (GANs) are refused on several ranks, before any
    collective runs."""
    from types import SimpleNamespace

    from torch import nn

    import physgen.train.ddp as ddp

    class Adversarial(nn.Linear):
        def training_step(self, batch, optimizers, *, generator):
            return 0.0

    monkeypatch.setattr(ddp, "world", lambda: (0, 2))
    run = SimpleNamespace(module=Adversarial(2, 2), source=None, seed=0, generator=torch.Generator())
    with pytest.raises(TypeError, match=r"Adversarial trains through its own training_step .* train it in one process"):
        ddp.data_parallel(run)
    monkeypatch.setattr(ddp, "world", lambda: (0, 1))
    assert ddp.data_parallel(run) is None  # one process: nothing changes


def test_shards_partition_every_global_batch_of_a_lazy_store(tmp_path):
    """The sampler over a store read chunk by chunk (larger than memory): with the same shuffling generator, the
    shares of 3 ranks are disjoint, together make each global batch of one process in order, and carry the
    weights that make the averaged gradient the global batch's (a rank with no row gets one row of weight 0)."""
    import zarr

    from physgen.data import LazyArray
    from physgen.train.ddp import _Shards
    from physgen.train.sources import ChunkedSource

    n = 1000
    theta = torch.arange(2 * n, dtype=torch.float32).reshape(n, 2)
    x = zarr.create_array(str(tmp_path / "x.zarr"), shape=(n, 3), chunks=(64, 3), dtype="float32")
    x[:] = torch.arange(3 * n, dtype=torch.float32).reshape(n, 3).numpy()
    source = ChunkedSource(theta, LazyArray(x), 0.1, 0, torch.device("cpu"), batch_size=50)
    whole = list(source.train_batches(torch.Generator().manual_seed(5)))
    assert len(whole) > 10 and len(whole[-1][0]) not in (0, 50)  # an uneven last batch
    shards = [_Shards(source, r, 3) for r in range(3)]
    parts = []
    for shard in shards:
        batches, weights = [], []
        for batch in shard.train_batches(torch.Generator().manual_seed(5)):
            batches.append(batch)
            weights.append(shard.weight)
        parts.append((batches, weights))
    for i, (th, xx) in enumerate(whole):
        rows = [parts[r][0][i] for r in range(3)]
        weights = [parts[r][1][i] for r in range(3)]
        assert torch.equal(torch.cat([b[0] for b in rows]), th) and torch.equal(torch.cat([b[1] for b in rows]), xx)
        # DDP averages: (1/W) Σ_r w_r ∇L_r = Σ_r (m_r / m) ∇L_r, the global batch's mean-loss gradient
        assert sum(weights) == pytest.approx(3.0)
        assert all(w == pytest.approx(3 * len(b[0]) / len(th)) for w, b in zip(weights, rows))
    tiny = _Shards(TensorSourceOf(2), 0, 3)  # 2 rows over 3 ranks: rows [0, 0), [0, 1), [1, 2): rank 0 gets none
    (batch,) = list(tiny.train_batches(torch.Generator().manual_seed(0)))
    assert len(batch[0]) == 1 and tiny.weight == 0.0
    val, val_whole = next(iter(shards[1].val_batches())), next(iter(source.val_batches()))
    assert torch.equal(val[1], val_whole[1])  # validation is whole on every rank


class TensorSourceOf:
    """A source with one training batch of ``m`` rows."""

    def __init__(self, m):
        self.n, self.m = m, m

    def train_batches(self, shuffle):
        yield (torch.zeros(self.m, 1),)
