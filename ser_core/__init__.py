"""ser_core: the library behind the SER batch pipelines.

Records and corpus readers (list, never decode), audio decoding, feature extraction,
speaker-independent splits, the ResLSTM-SA model, training, evaluation and the helpers
that the Beam pipelines in ``pipelines/`` are built from.
"""

from ser_core.logs import silence_cloud_client_notes

__version__ = "0.1.0"

# Before any module of the package imports apache_beam (see ser_core/logs.py).
silence_cloud_client_notes()
