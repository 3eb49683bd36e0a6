"""Test configuration: the fast profile and a headless matplotlib for everything pytest starts.

nbval starts notebook kernels from this process, so they inherit these variables.
"""

import os

import pytest
import torch

os.environ.setdefault("PPO_EDU_PROFILE", "fast")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    # The course's models are tiny: one thread is fastest, and on a busy 2-core machine a
    # second thread spinning at every synchronisation point makes tests up to ~50x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
