"""Fixtures shared by the test modules."""
from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs one worker per core) the workers share the cores:
    each one, and the processes its tests start, gets its share of torch threads instead of
    every core (which would oversubscribe the CPU)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        share = str(max(1, cores // int(workers)))
        os.environ.setdefault("OMP_NUM_THREADS", share)
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def one_thread():
    """One intra-op thread for the duration of a test: with tiny models, thread start-up and
    contention on a shared CPU would dominate. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
