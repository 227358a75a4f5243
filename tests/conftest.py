"""Shared pytest fixtures."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

INSTALL_DEV = 'pip install -e ".[dev]"'  # installs every Python package any test needs (pyproject.toml)


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _explain_skip(reason: str) -> str:
    """A skip for a missing Python package names the command that installs it."""
    m = re.search(r"could not import '([\w.]+)'", reason)
    if m:
        return f"{m.group(1).split('.')[0]} is not installed: {INSTALL_DEV}"
    return reason


def _skip_to_failure(report, what: str) -> None:
    """Nothing skips on CI: a skipped test or module becomes a failure that says why it would have skipped."""
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"{what} would skip on CI, where every test must run: {_explain_skip(reason)}"


def _rewrite_skip_reason(report) -> None:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        path, line, reason = report.longrepr
        report.longrepr = (path, line, _explain_skip(reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        if on_ci():
            _skip_to_failure(report, item.nodeid)
        else:
            _rewrite_skip_reason(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped:  # a module-level importorskip / skip(allow_module_level=True)
        if on_ci():
            _skip_to_failure(report, collector.nodeid)
        else:
            _rewrite_skip_reason(report)


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
        if on_ci():
            pytest.fail(f"CI run without the shared test data at {root} (set ZEROLLM_SHARED_DATA)")
        pytest.skip(f"shared test data not found at {root} (set ZEROLLM_SHARED_DATA to its location)")
    return root


@pytest.fixture(scope="session")
def native():
    """The compiled kernels (zerollm.kernels); on CI (CI=true) failing to build them is a failure, elsewhere a
    skip (they need g++ and ninja)."""
    from zerollm import kernels

    if not kernels.load():
        if on_ci():
            pytest.fail("zerollm.kernels did not build (g++ and ninja are needed)")
        pytest.skip("zerollm.kernels did not build here: apt-get install g++ (ninja comes with zerollm)")
    return kernels.ops()
