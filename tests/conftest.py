import pytest

from tests.synth_audio import REAL_RAVDESS


@pytest.fixture(scope="session")
def real_ravdess():
    """The 144 real RAVDESS clips shipped beside the project (skip where absent)."""
    if not REAL_RAVDESS.is_dir():
        pytest.skip(f"real RAVDESS clips not found at {REAL_RAVDESS}")
    return REAL_RAVDESS



_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # The suite runs Beam pipelines in this process; gRPC threads they leave behind can
    # abort CPython's teardown after every result is printed (see
    # ser_core.cli.exit_without_teardown). Leave with pytest's own exit status.
    if _EXIT_STATUS:
        from ser_core.cli import exit_without_teardown

        exit_without_teardown(_EXIT_STATUS[-1])
