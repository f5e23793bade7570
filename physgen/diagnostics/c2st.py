"""Classifier two-sample test (C2ST), the benchmark-standard metric of sbi / sbibm.

Math:
    Given samples ``a ~ P`` (n points) and ``b ~ Q`` (m points) in R^D, label them 0 and 1,
    train a classifier to tell them apart and report its held-out accuracy, averaged over
    ``n_folds`` stratified cross-validation folds. If P = Q no classifier beats chance, so the
    accuracy is about 0.5 (exactly max(n, m) / (n + m) for unequal sizes); if P and Q have
    disjoint supports it reaches 1.0. Both samples are z-scored with the mean and standard
    deviation (ddof = 1) of ``a`` (a feature with std < 1e-14 is left unscaled), as in sbi.

Implementation:
    scikit-learn (installed as a dependency of sbi; it is not a direct dependency of physgen):
    ``MLPClassifier`` with two hidden layers of 10·D ReLU units, Adam, ``max_iter=1000``,
    early stopping with ``n_iter_no_change=50`` (the defaults of ``sbi.utils.metrics.c2st``
    with ``classifier="mlp"`` in sbi 0.27), and ``StratifiedKFold(n_folds, shuffle=True)``.
    sbi uses an unstratified ``KFold``; with equal sample sizes the two agree to within the
    statistical noise of the test (checked in tests/test_c2st.py). ``classifier="sbibm"`` is sbibm's
    ``c2st`` exactly (the metric of the sbibm paper's published figures): the same network without
    early stopping and ``max_iter=10000`` (it trains until the training loss stops improving), folds
    by an unstratified shuffled ``KFold``. In 10 dimensions it scores the same two sample sets lower
    than the default (by 0.06 on a bernoulli_glm NPE posterior: docs/benchmarks.md), so compare a
    figure with sbibm's only when it was computed the same way.

Example:
    >>> import torch
    >>> from physgen.diagnostics import c2st
    >>> a, b = torch.randn(1000, 2), torch.randn(1000, 2) + 3.0
    >>> c2st(a, b) > 0.9
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["c2st"]


def _as_2d_array(v: Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(v, Tensor):
        arr = v.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(v, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"c2st: {name} must have shape (n, D); got shape {arr.shape}. Reshape it with .reshape(n, -1)."
        )
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(
            f"c2st: {name} has {bad} rows with NaN or inf; drop them before the test (e.g. a[torch.isfinite(a).all(-1)])."
        )
    return arr


def _make_classifier(classifier: Any, dim: int, seed: int):
    if classifier in ("mlp", "sbibm"):
        from sklearn.neural_network import MLPClassifier

        # sbi: early stopping on a validation split; sbibm: trained until the training loss stops improving
        stopping = (
            {"max_iter": 10000}
            if classifier == "sbibm"
            else {"max_iter": 1000, "early_stopping": True, "n_iter_no_change": 50}
        )
        return MLPClassifier(
            activation="relu", hidden_layer_sizes=(10 * dim, 10 * dim), solver="adam", random_state=seed, **stopping
        )
    if classifier == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(random_state=seed)
    if isinstance(classifier, str):
        raise ValueError(
            f"c2st: unknown classifier {classifier!r}; use 'mlp', 'sbibm', 'rf' or a scikit-learn classifier instance."
        )
    if not (hasattr(classifier, "fit") and hasattr(classifier, "predict")):
        raise TypeError(
            f"c2st: classifier must be 'mlp', 'rf' or a scikit-learn estimator with fit/predict; got {type(classifier).__name__}."
        )
    return classifier


def c2st(
    a: Tensor | np.ndarray,
    b: Tensor | np.ndarray,
    *,
    seed: int = 0,
    n_folds: int = 5,
    classifier: Any = "mlp",
    z_score: bool = True,
    noise_scale: float | None = None,
) -> float:
    """Classifier two-sample test accuracy between two sample sets.

    Args:
        a: ``(n, D)`` samples of the first distribution (tensor on any device, or array).
        b: ``(m, D)`` samples of the second distribution.
        seed: seeds the classifier, the fold split and the optional noise.
        n_folds: number of stratified cross-validation folds (>= 2).
        classifier: ``"mlp"`` (default, as in sbi), ``"sbibm"`` (sbibm's MLP and unstratified folds,
            exactly), ``"rf"`` (random forest, sbi's default) or an unfitted scikit-learn classifier.
        z_score: standardise both sets with the mean and std of ``a``.
        noise_scale: if given, add N(0, noise_scale²) noise to both sets (after z-scoring).

    Returns:
        The mean held-out accuracy over the folds, a float in [0, 1]: 0.5 means the sets are
        indistinguishable, 1.0 fully separable.

    Raises:
        ValueError: for inputs that are not 2-d, have different D, contain NaN/inf, or have
            fewer than ``n_folds`` samples on one side.
    """
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"c2st: n_folds must be an int >= 2; got {n_folds!r}")
    x0, x1 = _as_2d_array(a, "a"), _as_2d_array(b, "b")
    if x0.shape[1] != x1.shape[1]:
        raise ValueError(f"c2st: a and b must have the same number of columns D; got a {x0.shape} and b {x1.shape}")
    if min(len(x0), len(x1)) < n_folds:
        raise ValueError(
            f"c2st: each sample set needs at least n_folds={n_folds} rows for stratified folds; "
            f"got {len(x0)} and {len(x1)}. Pass more samples or a smaller n_folds."
        )
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    if z_score:
        mean = x0.mean(axis=0)
        std = x0.std(axis=0, ddof=1) if len(x0) > 1 else np.ones(x0.shape[1])
        std = np.where(std < 1e-14, 1.0, std)
        x0, x1 = (x0 - mean) / std, (x1 - mean) / std
    if noise_scale is not None:
        rng = np.random.default_rng(seed)
        x0 = x0 + noise_scale * rng.standard_normal(x0.shape)
        x1 = x1 + noise_scale * rng.standard_normal(x1.shape)

    data = np.concatenate([x0, x1]).astype(np.float32)
    target = np.concatenate([np.zeros(len(x0)), np.ones(len(x1))])
    clf = _make_classifier(classifier, x0.shape[1], seed)
    split = KFold if isinstance(classifier, str) and classifier == "sbibm" else StratifiedKFold
    folds = split(n_splits=n_folds, shuffle=True, random_state=seed)
    scores = cross_val_score(clf, data, target, cv=folds, scoring="accuracy")
    return float(np.mean(scores))
