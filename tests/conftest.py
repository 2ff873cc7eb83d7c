"""Unit-test fixtures shared by every test file."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Unit tests use tiny tensors: on a 2-core machine, two torch threads mostly wait on each other.

    Each test runs with one thread (and restores the count, since the trainers set their own).
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def no_progress_bars(monkeypatch):
    """No tqdm progress bars from the training loops (``pytestmark = pytest.mark.usefixtures(...)``)."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
