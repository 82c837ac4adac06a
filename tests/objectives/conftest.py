"""Tiny models run fastest on one thread; with 2 threads on a busy 2-core machine, forwards slow down ~50x."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
