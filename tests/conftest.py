import pytest

from tests.synth_audio import REAL_RAVDESS


@pytest.fixture(scope="session")
def real_ravdess():
    """The 144 real RAVDESS clips shipped beside the project (skip where absent)."""
    if not REAL_RAVDESS.is_dir():
        pytest.skip(f"real RAVDESS clips not found at {REAL_RAVDESS}")
    return REAL_RAVDESS

