import pytest

from tests.training.synth_features import feature_table, write_shards


@pytest.fixture(scope="session")
def features_dir(tmp_path_factory):
    """24 RAVDESS actors x 8 emotions x 2 clips of 8-20 frames x 6 dims, in two shards."""
    return write_shards(tmp_path_factory.mktemp("features"), feature_table())
