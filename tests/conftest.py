"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Every test runs torch on one thread: results do not depend on the machine's core count, and small
    matmuls do not stall in the thread pool when the CI machine is shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def shared_data_dir() -> Path:
    """The project's shared test data (/work/shared/data next to the repo), or $ZEROLLM_SHARED_DATA."""
    env = os.environ.get("ZEROLLM_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared data directory. Off CI, a test that needs it skips (with the reason) when it is
    absent; on CI (CI=true), where ../shared is always present, its absence is a failure, not a skip."""
    root = shared_data_dir()
    if not root.is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI run without the shared test data at {root} (set ZEROLLM_SHARED_DATA)")
        pytest.skip(f"shared test data not found at {root} (set ZEROLLM_SHARED_DATA to its location)")
    return root


@pytest.fixture(scope="session")
def native():
    """The compiled kernels (zerollm.kernels); on CI (CI=true) failing to build them is a failure, elsewhere a
    skip (they need g++ and ninja)."""
    from zerollm import kernels

    if not kernels.load():
        if os.environ.get("CI"):
            pytest.fail("zerollm.kernels did not build (g++ and ninja are needed)")
        pytest.skip("zerollm.kernels did not build here (no g++/ninja)")
    return kernels.ops()
