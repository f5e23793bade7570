import math

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


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_continues_to_the_same_result(tmp_path, ema):
    x, y = data()
    torch.manual_seed(0)
    ref = Regressor()
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    opts = dict(lr=1e-2, patience=100, progress=False, ema=ema)
    fit(ref, (x, y), max_epochs=12, checkpoint_dir=tmp_path / "a", **opts)

    m = Regressor()
    m.load_state_dict(init)
    fit(m, (x, y), max_epochs=5, checkpoint_dir=tmp_path / "b", **opts)
    m2 = Regressor()  # a fresh process would rebuild the model, then resume
    m2.load_state_dict(init)
    res = fit(m2, (x, y), max_epochs=12, checkpoint_dir=tmp_path / "b", resume=True, **opts)
    assert res.epochs == 12
    for k, v in ref.state_dict().items():
        assert torch.allclose(v, m2.state_dict()[k], atol=1e-6), k


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
    with pytest.raises(ValueError, match="ema is a decay"):
        fit(Regressor(), (x, y), ema=1.0, progress=False)
    with pytest.raises(ValueError, match="validation_fraction"):
        fit(Regressor(), (x, y), validation_fraction=1.5, progress=False)
