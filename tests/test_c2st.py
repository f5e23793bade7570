"""physgen.diagnostics.c2st: agreement with sbi, the 0.5 / 1.0 limits, invariances and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physgen.diagnostics import c2st


def _pair(n: int, d: int, shift: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g) + shift


@pytest.mark.parametrize("d,shift", [(2, 0.4), (3, 0.6)])
def test_agrees_with_sbi(d, shift):
    from sbi.utils.metrics import c2st as sbi_c2st

    # away from chance: at chance both estimates are pure fold noise (sd ~ 0.01 each)
    a, b = _pair(1500, d, shift, seed=d)
    ours = c2st(a, b, seed=0)
    theirs = float(sbi_c2st(a, b, seed=0, classifier="mlp"))
    assert abs(ours - theirs) < 0.02, (ours, theirs)


def test_identical_distributions_near_chance():
    a, b = _pair(2000, 2, 0.0, seed=11)
    assert 0.45 < c2st(a, b) < 0.55


def test_separated_distributions_near_one():
    a, b = _pair(1000, 2, 3.0, seed=12)
    assert c2st(a, b) > 0.9


def test_numpy_input_seed_and_scale_invariance():
    a, b = _pair(300, 2, 0.5, seed=13)
    r = c2st(a, b, seed=3)
    assert c2st(a.numpy(), b.numpy(), seed=3) == pytest.approx(r, abs=1e-12)
    assert c2st(a, b, seed=3) == r  # deterministic
    # z-scoring with a's mean/std makes the test invariant to an affine change of units
    assert c2st(1e3 * a + 7.0, 1e3 * b + 7.0, seed=3) == pytest.approx(r, abs=0.01)


def test_unequal_sizes_and_noise_option():
    a, b = _pair(500, 2, 0.0, seed=14)
    r = c2st(a, b[:300], noise_scale=0.1)
    # chance level for 500 vs 300 is predicting the majority class: 0.625
    assert 0.5 < r < 0.7


def test_sbibm_option_is_sbibm_c2st_exactly():
    """classifier="sbibm" reproduces sbibm.metrics.c2st (its code, written out here: sbibm is not installed)."""
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    a, b = _pair(600, 3, 0.5, seed=16)
    X, Y = a.double(), b.double()
    mean, std = X.mean(0), X.std(0)
    X, Y = ((X - mean) / std).numpy(), ((Y - mean) / std).numpy()
    clf = MLPClassifier(activation="relu", hidden_layer_sizes=(30, 30), max_iter=10000, solver="adam", random_state=1)
    data, target = np.concatenate((X, Y)).astype(np.float32), np.concatenate((np.zeros(600), np.ones(600)))
    theirs = cross_val_score(clf, data, target, cv=KFold(n_splits=5, shuffle=True, random_state=1)).mean()
    assert c2st(a, b, seed=1, classifier="sbibm") == pytest.approx(theirs, abs=1e-12)
    assert c2st(a, b, seed=1, classifier="sbibm") != c2st(a, b, seed=1)  # not the default's network or folds
    assert 0.45 < c2st(*_pair(600, 2, 0.0, seed=17), classifier="sbibm") < 0.56


def test_random_forest_option_separates():
    a, b = _pair(400, 2, 3.0, seed=15)
    assert c2st(a, b, classifier="rf") > 0.9


@pytest.mark.parametrize(
    "a,b,match",
    [
        (np.zeros((20, 2)), np.zeros((20, 3)), "same number of columns"),
        (np.zeros(20), np.zeros((20, 1)), r"shape \(n, D\)"),
        (np.r_[np.zeros((19, 2)), [[np.nan, 0.0]]], np.zeros((20, 2)), "NaN"),
        (np.zeros((20, 2)), np.r_[np.zeros((19, 2)), [[np.inf, 0.0]]], "NaN or inf"),
        (np.zeros((4, 2)), np.zeros((20, 2)), "at least n_folds=5"),
    ],
)
def test_bad_input_errors(a, b, match):
    with pytest.raises(ValueError, match=match):
        c2st(a, b)


def test_bad_options_errors():
    a, b = np.zeros((20, 2)), np.ones((20, 2))
    with pytest.raises(ValueError, match="n_folds"):
        c2st(a, b, n_folds=1)
    with pytest.raises(ValueError, match="unknown classifier"):
        c2st(a, b, classifier="svm")
    with pytest.raises(TypeError, match="scikit-learn estimator"):
        c2st(a, b, classifier=object())
