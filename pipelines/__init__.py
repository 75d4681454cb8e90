"""Apache Beam pipelines (entry points): ``features`` (manifest -> Parquet features) and
``label`` (audio archives -> emotion segments). Shared Beam helpers live in ``common``."""
