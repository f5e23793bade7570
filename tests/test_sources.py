"""Training sources: size-bucketed batches of padded point sets (physgen.train.sources)."""

from __future__ import annotations

import pytest
import torch

from physgen.shapes import join_points
from physgen.train.sources import BUCKET_POOL, make_source, point_counts


def _point_data(n=600, n_max=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, n_max + 1, (n,), generator=g)
    mask = torch.arange(n_max) < counts[:, None]
    x = join_points(torch.rand(n, n_max, 2, generator=g), mask)
    theta = torch.arange(n, dtype=torch.float32)[:, None]  # row id
    return theta, x, counts


def _epoch(src, seed):
    return list(src.train_batches(torch.Generator().manual_seed(seed)))


def test_bucketed_epoch_visits_every_row_once_with_similar_sizes():
    theta, x, counts = _point_data()
    src = make_source((theta, x), validation_fraction=0.1, seed=0, device=torch.device("cpu"), batch_size=16)
    assert src.counts is not None
    batches = _epoch(src, 1)
    ids = torch.cat([b[0][:, 0] for b in batches]).long()
    assert sorted(ids.tolist()) == sorted(src.train[0][:, 0].long().tolist())  # each training row exactly once
    # rows keep their x
    for th, xb in batches:
        torch.testing.assert_close(xb, x[th[:, 0].long()])
    # batches are narrow in size: the padding a batch carries beyond its largest set is what bucketing saves
    spread = torch.tensor([float(point_counts(xb).max() - point_counts(xb).min()) if point_counts(xb) is not None
                           else 0.0 for _, xb in batches])
    unbucketed = make_source((theta, x), validation_fraction=0.1, seed=0, device=torch.device("cpu"), batch_size=16,
                             bucket_by=None)
    assert unbucketed.counts is None
    plain = torch.tensor([float(counts[b[0][:, 0].long()].max() - counts[b[0][:, 0].long()].min())
                          for b in _epoch(unbucketed, 1)])
    assert float(spread.mean()) < 0.25 * float(plain.mean())


def test_bucketed_orders_differ_between_epochs_and_repeat_with_the_seed():
    theta, x, _ = _point_data()
    src = make_source((theta, x), validation_fraction=0.1, seed=0, device=torch.device("cpu"), batch_size=16)
    a = [b[0][:, 0].tolist() for b in _epoch(src, 1)]
    b = [b[0][:, 0].tolist() for b in _epoch(src, 2)]
    assert a == [b_[0][:, 0].tolist() for b_ in _epoch(src, 1)]
    assert a != b
    # batch membership also changes (pools are drawn afresh), not only the batch order
    assert {tuple(sorted(r)) for r in a} != {tuple(sorted(r)) for r in b}
    assert len(a) > BUCKET_POOL  # more than one pool here


def test_validation_rows_sorted_by_size_and_complete():
    theta, x, counts = _point_data()
    src = make_source((theta, x), validation_fraction=0.2, seed=3, device=torch.device("cpu"), batch_size=16)
    val_ids = torch.cat([b[0][:, 0] for b in src.val_batches()]).long()
    assert len(val_ids) == 120 and len(set(val_ids.tolist())) == 120
    assert bool((counts[val_ids][1:] >= counts[val_ids][:-1]).all())


def test_other_data_is_not_bucketed_and_mask_mode_says_why():
    theta = torch.randn(100, 2)
    x = torch.randn(100, 8, 3)  # not a point set: its last column is not a 0/1 mask
    src = make_source((theta, x), validation_fraction=0.1, seed=0, device=torch.device("cpu"), batch_size=10)
    assert src.counts is None
    full = join_points(torch.rand(100, 8, 2), torch.ones(100, 8, dtype=torch.bool))  # no padding: nothing to save
    assert point_counts(full) is None
    with pytest.raises(ValueError, match="bucket_by='mask' needs a tensor of padded point sets"):
        make_source((theta, x), validation_fraction=0.1, seed=0, device=torch.device("cpu"), batch_size=10,
                    bucket_by="mask")
    with pytest.raises(ValueError, match="bucket_by must be one of"):
        make_source((theta, x), validation_fraction=0.1, seed=0, device=torch.device("cpu"), batch_size=10,
                    bucket_by="size")


def test_stable_split_keeps_each_rows_side_when_rows_are_appended():
    """``validation_split="stable"``: about the fraction held out, the two sides partition the rows, a row's side
    does not change when the data grow (sequential rounds), and the seed changes the split; bad names refused."""
    from physgen.train.split import split_rows as _split

    v1, t1 = _split(1000, 0.1, 3, "stable")
    v2, t2 = _split(5000, 0.1, 3, "stable")
    assert 60 <= len(v1) <= 140 and 400 <= len(v2) <= 600
    assert sorted(torch.cat([v2, t2]).tolist()) == list(range(5000))
    assert set(v1.tolist()) == {i for i in v2.tolist() if i < 1000}  # the first 1000 rows kept their sides
    assert set(v1.tolist()) != set(_split(1000, 0.1, 4, "stable")[0].tolist())
    random_v, _ = _split(1000, 0.1, 3, "random")
    assert set(random_v.tolist()) != {i for i in _split(2000, 0.1, 3, "random")[0].tolist() if i < 1000}
    for n in (2, 3):  # at least one row each side
        v, t = _split(n, 0.1, 0, "stable")
        assert len(v) >= 1 and len(t) >= 1 and len(v) + len(t) == n
    with pytest.raises(ValueError, match=r"validation_split must be one of \('random', 'stable'\)"):
        make_source((torch.zeros(10, 1),), validation_fraction=0.1, seed=0, device=torch.device("cpu"), batch_size=4,
                    validation_split="hash")
