"""Apache Beam pipelines (entry points): ``features`` (manifest -> Parquet features) and
``label`` (audio archives -> emotion segments). Shared Beam helpers live in ``common``."""

import ser_core  # noqa: F401,E402  (quiets Beam's import-time cloud-client notes first)
