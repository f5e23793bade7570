import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # 2-core CI machine: one intra-op thread is fastest for the small networks in tests.
    torch.set_num_threads(1)
    yield
