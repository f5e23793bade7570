import json
import math
import time
import warnings

import pytest
import torch
from torch import nn

from physgen.io import CheckpointError
from physgen.train import TrainingError, fit


class Regressor(nn.Module):
    """Gaussian negative log-likelihood of y given x with a linear mean: an exact optimum exists."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def loss(self, x, y):
        mu = self.lin(x)
        return (0.5 * ((y - mu) / self.log_sigma.exp()) ** 2 + self.log_sigma).mean()


def data(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g)
    y = 2.0 * x - 1.0 + 0.5 * torch.randn(n, 1, generator=g)
    return x, y


def test_fit_recovers_least_squares_and_stops_early():
    x, y = data()
    m = Regressor()
    res = fit(m, (x, y), lr=1e-2, max_epochs=400, patience=10, progress=False, batch_size=128)
    assert res.stopped == "early_stopping" and res.epochs < 400
    assert abs(m.lin.weight.item() - 2.0) < 0.05 and abs(m.lin.bias.item() + 1.0) < 0.05
    assert abs(m.log_sigma.exp().item() - 0.5) < 0.03
    best = min(h["val_loss"] for h in res.history)
    assert res.best_val_loss == best


def test_same_seed_same_weights():
    x, y = data()
    ws = []
    for _ in range(2):
        torch.manual_seed(123)
        m = Regressor()
        fit(m, (x, y), lr=1e-2, max_epochs=5, progress=False, seed=3)
        ws.append(m.lin.weight.detach().clone())
    assert torch.equal(ws[0], ws[1])


class NoisyRegressor(Regressor):
    """A stochastic loss: noise from the run's generator, dropout from torch's global RNG."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.2)

    def loss(self, x, y, *, generator=None):
        noise = 0.1 * torch.randn(x.shape, generator=generator, device=x.device)
        return super().loss(self.drop(x + noise), y)


@pytest.mark.parametrize("ema", [None, 0.9])
@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, ema, schedule):
    x, y = data(600)
    torch.manual_seed(0)
    init = NoisyRegressor().state_dict()
    opts = dict(lr=1e-2, patience=100, progress=False, ema=ema, schedule=schedule, batch_size=64)
    ref = NoisyRegressor()
    ref.load_state_dict(init)
    r_ref = fit(ref, (x, y), max_epochs=12, checkpoint_dir=tmp_path / "a", **opts)

    def crash(epoch, module, result):  # a kill during epoch 5: the checkpoint of epoch 4 is on disk
        if epoch == 5:
            raise KeyboardInterrupt

    m = NoisyRegressor()
    m.load_state_dict(init)
    with pytest.raises(KeyboardInterrupt):
        fit(m, (x, y), max_epochs=12, checkpoint_dir=tmp_path / "b", callbacks=[crash], **opts)
    m2 = NoisyRegressor()  # a fresh process would rebuild the model, then resume
    res = fit(m2, (x, y), max_epochs=12, checkpoint_dir=tmp_path / "b", resume=True, **opts)
    assert res.epochs == 12
    assert [h["val_loss"] for h in res.history] == [h["val_loss"] for h in r_ref.history]
    for k, v in ref.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k


def test_resume_refuses_another_model(tmp_path):
    x, y = data(200)
    fit(Regressor(), (x, y), max_epochs=2, progress=False, checkpoint_dir=tmp_path)
    other = nn.Module()
    other.lin = nn.Linear(2, 1)
    other.loss = lambda a, b: other.lin(torch.cat([a, b], -1)).mean()
    with pytest.raises(TrainingError, match="different model"):
        fit(other, (x, y), max_epochs=2, progress=False, checkpoint_dir=tmp_path, resume=True)


def test_corrupted_checkpoint_is_clear_error(tmp_path):
    x, y = data(200)
    fit(Regressor(), (x, y), max_epochs=2, progress=False, checkpoint_dir=tmp_path)
    (tmp_path / "checkpoint.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        fit(Regressor(), (x, y), max_epochs=2, progress=False, checkpoint_dir=tmp_path, resume=True)


class SpikyGradient(Regressor):
    """A finite loss whose gradient is infinite on batches holding a marked row (x = 0): d sqrt(z)/dz at 0."""

    every_batch = False

    def loss(self, x, y):
        out = super().loss(x, y)
        if self.training and (self.every_batch or bool((x == 0).any())):
            out = out + torch.sqrt(self.log_sigma - self.log_sigma.detach())  # value 0, gradient inf
        return out


def test_nonfinite_gradient_skips_step_and_records_it():
    x, y = data()
    x[7] = 0.0  # one marked row: the one training batch that holds it each epoch is skipped
    m = SpikyGradient()
    with pytest.warns(RuntimeWarning, match="skipped for a non-finite gradient norm"):
        res = fit(m, (x, y), lr=1e-2, max_epochs=30, batch_size=128, progress=False, seed=0)
    assert all(torch.isfinite(p).all() for p in m.parameters())
    skips = [h.get("skipped_steps", 0) for h in res.history]
    assert set(skips) <= {0, 1} and sum(skips) >= 1  # the marked row lies in the training split here
    assert abs(m.lin.weight.item() - 2.0) < 0.1 and abs(m.lin.bias.item() + 1.0) < 0.1


def test_nonfinite_gradient_on_every_batch_stops():
    x, y = data(2000)
    m = SpikyGradient()
    m.every_batch = True
    with pytest.raises(TrainingError, match="10 batches in a row"):
        fit(m, (x, y), max_epochs=5, batch_size=100, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    x, y = data(500)

    class Exploding(Regressor):
        calls = 0

        def loss(self, x, y):
            Exploding.calls += 1
            out = super().loss(x, y)
            return out * math.nan if Exploding.calls > 20 and self.training else out

    m = Exploding()
    with pytest.raises(TrainingError, match="non-finite training loss"):
        fit(m, (x, y), max_epochs=50, batch_size=100, progress=False, checkpoint_dir=tmp_path)
    from physgen.io import load_file

    tensors, meta = load_file(tmp_path / "checkpoint.safetensors", kind="checkpoint")
    assert len(meta["config"]["result"]["history"]) >= 1
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model."))
    assert all(torch.isfinite(p).all() for p in m.parameters())  # the module holds its best weights, not NaN


def test_ema_returns_the_moving_average_of_the_weights():
    # one full-batch step per epoch; with the same seed the raw trajectory is the same with and without
    # ema, and the averaged weights after one step are w0 + (1 - d)(w1 - w0), d = min(decay, 1/10)
    x, y = data(200)
    torch.manual_seed(0)
    init = Regressor().state_dict()
    raw, avg = Regressor(), Regressor()
    raw.load_state_dict(init)
    avg.load_state_dict(init)
    opts = dict(lr=0.1, batch_size=1000, max_epochs=1, patience=100, progress=False)
    r1 = fit(raw, (x, y), **opts)
    r2 = fit(avg, (x, y), ema=0.5, **opts)
    assert r1.best_epoch == 0 and r2.best_epoch == 0  # one step from a poor start improves both
    for k, w0 in init.items():
        w1 = raw.state_dict()[k]
        assert not torch.allclose(w0, w1)
        torch.testing.assert_close(avg.state_dict()[k], w0 + 0.9 * (w1 - w0))
    # on a longer run the average still converges to the least-squares answer
    m = Regressor()
    fit(m, data(), lr=1e-2, max_epochs=200, patience=20, batch_size=128, ema=0.99, progress=False)
    assert abs(m.lin.weight.item() - 2.0) < 0.05 and abs(m.lin.bias.item() + 1.0) < 0.05


def test_min_delta_counts_only_large_improvements():
    x, y = data(500)
    m = Regressor()
    # after the first epoch (which beats the initial +inf) no epoch can improve by 1e9: patience runs out
    # 3 epochs later, yet the best weights still follow the small improvements
    res = fit(m, (x, y), lr=1e-2, max_epochs=50, patience=3, min_delta=1e9, progress=False)
    assert res.epochs == 4 and res.stopped == "early_stopping" and res.patience_epoch == 0
    assert res.best_epoch == 3 and res.best_val_loss == res.history[-1]["val_loss"]
    res = fit(Regressor(), (x, y), lr=1e-2, max_epochs=50, patience=3, min_delta=0.0, progress=False)
    assert res.epochs > 3
    with pytest.raises(ValueError, match="min_delta"):
        fit(Regressor(), (x, y), min_delta=-1.0, progress=False)


def test_resume_needs_the_same_ema_setting(tmp_path):
    x, y = data(200)
    fit(Regressor(), (x, y), max_epochs=2, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match="same ema setting"):
        fit(Regressor(), (x, y), max_epochs=4, progress=False, checkpoint_dir=tmp_path, resume=True, ema=0.9)


def test_bad_arguments():
    x, y = data(10)
    with pytest.raises(ValueError, match="same first dimension"):
        fit(Regressor(), (x, y[:5]), progress=False)
    with pytest.raises(ValueError, match="ema must be"):
        fit(Regressor(), (x, y), ema=1.0, progress=False)
    with pytest.raises(ValueError, match="validation_fraction"):
        fit(Regressor(), (x, y), validation_fraction=1.5, progress=False)


# ---------------------------------------------------------------- hooks: generator, optimizers, callbacks, time


def test_the_generator_reaches_the_loss_and_the_callers_rng_is_untouched():
    x, y = data(300)
    seen = []

    class Probe(NoisyRegressor):
        def loss(self, x, y, *, generator=None):
            seen.append(generator)
            return super().loss(x, y, generator=generator)

    def run(seed):
        torch.manual_seed(0)
        m = Probe()
        fit(m, (x, y), max_epochs=3, seed=seed, progress=False)
        return m.lin.weight.detach().clone()

    a, b, c = run(1), run(1), run(2)
    assert seen and all(isinstance(g, torch.Generator) for g in seen)
    assert torch.equal(a, b) and not torch.equal(a, c)
    m = Probe()
    before = torch.get_rng_state()
    fit(m, (x, y), max_epochs=1, progress=False)  # its draws (dropout) come from a fork of the global RNG
    assert torch.equal(torch.get_rng_state(), before)


def test_optimizer_factory_is_used():
    x, y = data(300)
    m = Regressor()
    init = {k: v.clone() for k, v in m.state_dict().items()}
    fit(m, (x, y), max_epochs=2, progress=False, optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    for k, v in m.state_dict().items():  # lr 0: nothing moves (AdamW at lr 1e-3 would)
        assert torch.equal(v, init[k])
    with pytest.raises(TypeError, match=r"not a torch\.optim\.Optimizer"):
        fit(Regressor(), (x, y), max_epochs=1, progress=False, optimizer=lambda p: None)


class Pair(nn.Module):
    """Two parts trained in turns by two optimizers (the shape of an adversarial pair)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = Regressor(), Regressor()
        self.steps = 0

    def loss(self, x, y):
        return self.a.loss(x, y) + self.b.loss(x, y)

    def training_step(self, batch, optimizers, *, generator):
        assert sorted(optimizers) == ["a", "b"] and isinstance(generator, torch.Generator)
        self.steps += 1
        part, opt = (self.a, optimizers["a"]) if self.steps % 2 else (self.b, optimizers["b"])
        loss = part.loss(*batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())


def test_two_optimizers_train_through_training_step(tmp_path):
    x, y = data(500)
    factories = {
        "a": lambda m: torch.optim.Adam(m.a.parameters(), lr=1e-2),
        "b": lambda m: torch.optim.SGD(m.b.parameters(), lr=1e-2),
    }
    torch.manual_seed(0)
    init = Pair().state_dict()
    m = Pair()
    m.load_state_dict(init)
    res = fit(m, (x, y), max_epochs=6, patience=100, progress=False, optimizer=factories, checkpoint_dir=tmp_path / "a")
    assert m.steps == 6 * 2  # 450 training rows, batch 256: two steps per epoch
    assert res.history[-1]["val_loss"] < res.history[0]["val_loss"]
    for k in init:
        assert not torch.equal(init[k], m.state_dict()[k]), k
    # both optimizers' states go through a checkpoint: a resumed run ends where the whole one did
    r = Pair()
    r.load_state_dict(init)
    fit(r, (x, y), max_epochs=3, patience=100, progress=False, optimizer=factories, checkpoint_dir=tmp_path / "b")
    r2 = Pair()
    r2.steps = r.steps
    fit(
        r2,
        (x, y),
        max_epochs=6,
        patience=100,
        progress=False,
        optimizer=factories,
        checkpoint_dir=tmp_path / "b",
        resume=True,
    )
    for k, v in m.state_dict().items():
        assert torch.equal(v, r2.state_dict()[k]), k
    with pytest.raises(TrainingError, match="same optimizer setting"):
        fit(Pair(), (x, y), max_epochs=8, progress=False, checkpoint_dir=tmp_path / "b", resume=True)


def test_a_callback_stops_training_and_sees_the_validated_weights():
    x, y = data(300)
    calls = []

    def check(epoch, module, result):
        calls.append((epoch, module.training, result.epochs, result.history[-1]["val_loss"]))
        return epoch == 2

    res = fit(Regressor(), (x, y), max_epochs=50, progress=False, callbacks=[check, lambda *a: None])
    assert res.stopped == "callback" and res.epochs == 3
    assert [c[:3] for c in calls] == [(0, False, 1), (1, False, 2), (2, False, 3)]


def test_max_time_stops_within_an_epoch():
    x, y = data(2000)

    class Slow(Regressor):
        steps = 0

        def loss(self, x, y):
            if self.training:
                Slow.steps += 1
                time.sleep(0.01)
            return super().loss(x, y)

    t0 = time.perf_counter()
    res = fit(Slow(), (x, y), batch_size=10, max_epochs=5, max_time=0.3, progress=False)
    elapsed = time.perf_counter() - t0
    assert res.stopped == "max_time" and res.epochs == 1 and res.history[0]["partial"]
    assert Slow.steps < 180 / 2  # an epoch is 180 steps of >= 10 ms; the 0.3 s budget allows ~30
    assert elapsed < 1.5, elapsed


def test_cosine_decays_over_max_time_when_it_comes_before_max_epochs():
    """With max_time the cosine spans the budget, whichever limit comes first: lr(epoch k) = lr0 (1 + cos(π p)) / 2
    with p the fraction of the budget spent after epoch k; without it, the epochs alone (as before)."""
    x, y = data(400)

    class Slow(Regressor):
        def loss(self, x, y):
            if self.training:
                time.sleep(0.004)
            return super().loss(x, y)

    # 360 training rows in batches of 40: 9 steps of >= 4 ms an epoch, so 1.2 s buys at most ~30 of 1000 epochs
    res = fit(Slow(), (x, y), batch_size=40, lr=1e-2, max_epochs=1000, max_time=1.2, schedule="cosine", progress=False)
    assert res.stopped == "max_time" and 5 < res.epochs < 40
    spent, lrs = 0.0, []
    for h in res.history[:-1]:
        spent += h["seconds"]
        lrs.append(h["lr"])
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # decaying every epoch, on the clock
    assert lrs[-1] < 0.15e-2  # the budget nearly spent: lr near 0, not the epoch cosine's ~1e-2
    assert res.history[0]["lr"] == pytest.approx(
        0.5e-2 * (1 + math.cos(math.pi * res.history[0]["seconds"] / 1.2)), rel=0.2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit(Regressor(), (x, y), max_epochs=3, max_time=60, schedule="cosine", progress=False)
    assert res.stopped == "max_epochs" and res.history[-1]["lr"] < 2e-4  # the epochs came first


def test_budget_cosine_without_max_time_is_the_epoch_cosine_and_round_trips_its_state():
    from physgen.train.optim import BudgetCosine

    w = torch.nn.Parameter(torch.zeros(1))
    a, b = torch.optim.SGD([w], lr=0.1), torch.optim.SGD([w], lr=0.1)
    ours, torchs = BudgetCosine(a, 10), torch.optim.lr_scheduler.CosineAnnealingLR(b, T_max=10)
    for _ in range(10):
        a.step(), b.step()
        ours.step(seconds=1e9)  # no max_time: the seconds do not count
        torchs.step()
        assert a.param_groups[0]["lr"] == pytest.approx(b.param_groups[0]["lr"], abs=1e-12)
    c, d = torch.optim.SGD([w], lr=0.1), torch.optim.SGD([w], lr=0.1)
    timed, again = BudgetCosine(c, 10, max_time=100.0), BudgetCosine(d, 10, max_time=100.0)
    c.step(), d.step()
    timed.step(seconds=50.0)  # half the time, a tenth of the epochs: the time decides
    assert c.param_groups[0]["lr"] == pytest.approx(0.05)
    again.load_state_dict(json.loads(json.dumps(timed.state_dict())))  # checkpoints keep it as JSON
    again.step(seconds=100.0)
    assert again.progress == 1.0 and d.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    longer = BudgetCosine(torch.optim.SGD([w], lr=0.1), 10, max_time=400.0)  # resumed with a larger budget
    longer.load_state_dict(json.loads(json.dumps(again.state_dict())))
    longer.optimizer.step()
    longer.step(seconds=200.0)  # half of the new budget: the rate rises again (a warm restart)
    assert longer.max_time == 400.0 and longer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_warm_start_gets_at_most_warm_start_rows():
    x, y = data(1000)
    got = []

    class Warm(Regressor):
        def warm_start(self, x, y):
            got.append(len(x))

    fit(Warm(), (x, y), max_epochs=1, progress=False)
    fit(Warm(), (x, y), max_epochs=1, progress=False, warm_start_rows=128)
    assert got == [900, 128]


# ---------------------------------------------------------------- data sources


class RowDataset(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class RowStream(torch.utils.data.IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return zip(self.x, self.y)


@pytest.mark.parametrize("kind", ["dataset", "stream"])
def test_datasets_train_like_tensors(kind):
    x, y = data(1500)
    ds = RowDataset(x, y) if kind == "dataset" else RowStream(x, y)
    m = Regressor()
    res = fit(m, ds, lr=2e-2, max_epochs=60, patience=10, batch_size=128, progress=False)
    assert abs(m.lin.weight.item() - 2.0) < 0.1 and abs(m.lin.bias.item() + 1.0) < 0.1
    assert res.best_val_loss < res.history[0]["val_loss"]


def test_unknown_data_is_a_clear_error():
    with pytest.raises(TypeError, match="cannot read data of type dict"):
        fit(Regressor(), {"x": 1}, progress=False)


# ---------------------------------------------------------------- checkpoints of the previous format


def test_a_format1_fit_checkpoint_is_refused_by_name(tmp_path):
    import shutil
    from pathlib import Path

    old = Path(__file__).parent / "data" / "checkpoint_format1_fit"
    shutil.copytree(old, tmp_path / "old")
    x, y = data(200)
    with pytest.raises(CheckpointError, match="format 1"):
        fit(Regressor(), (x, y), max_epochs=5, progress=False, checkpoint_dir=tmp_path / "old", resume=True, ema=0.9)


def test_progress_logs_epoch_lines_when_not_a_terminal(caplog):
    import logging

    x, y = data(200)
    with caplog.at_level(logging.INFO, logger="physgen.train"):
        fit(Regressor(), (x, y), max_epochs=3, patience=100, progress=True)
        lines = [r.getMessage() for r in caplog.records if r.name == "physgen.train"]
        # at most one line every 5 s, the last epoch always: three quick epochs log epochs 0 and 2
        assert [line[:20] for line in lines] == ["fit: epoch 0  train ", "fit: epoch 2  train "]
        caplog.clear()
        fit(Regressor(), (x, y), max_epochs=2, progress=False)
        assert [r for r in caplog.records if r.name == "physgen.train"] == []
