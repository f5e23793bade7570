"""The training-time distributions shared by FlowMatching and PointCloudFlow (physgen/models/_times.py):
each kind against its CDF by a KS test, and the names refused with the list of choices."""

import numpy as np
import pytest
import torch
from scipy.special import logit
from scipy.stats import kstest, norm

from physgen.emulators.point_cloud import PointCloudFlow
from physgen.models._times import TIME_SAMPLING, training_times
from physgen.models.flow_matching import FlowMatching

CDF = {
    "uniform": lambda t: t,
    "late": lambda t: 1.0 - np.sqrt(1.0 - t),  # 1 - t = (1 - u)^2
    "logit_normal": lambda t: norm.cdf(logit(t)),
    "lognormal": lambda t: norm.sf((1.2 - logit(t)) / 1.2),  # logit t = 1.2 - 1.2 z
}


@pytest.mark.parametrize("kind", TIME_SAMPLING)
def test_training_times_follow_their_distribution(kind):
    t = training_times(kind, 20_000, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
                       dtype=torch.float64).numpy()
    assert t.shape == (20_000,) and ((t >= 0) & (t <= 1)).all()
    assert kstest(t, CDF[kind]).pvalue > 1e-3
    others = [k for k in TIME_SAMPLING if k != kind]
    assert all(kstest(t, CDF[k]).pvalue < 1e-6 for k in others)  # the four are told apart


def test_unknown_time_sampling_is_refused_by_both_families_with_the_choices():
    for make in (lambda: FlowMatching(2, 1, time_sampling="power"), lambda: PointCloudFlow((3, 3), 1, time_sampling="power")):
        with pytest.raises(ValueError, match=r"time_sampling must be one of \('uniform'"):
            make()
    with pytest.raises(ValueError, match="time_sampling must be one of"):
        training_times("power", 3, generator=None, device=torch.device("cpu"), dtype=torch.float32)
