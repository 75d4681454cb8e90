"""ser_core: the library behind the SER batch pipelines.

Records and corpus readers (list, never decode), audio decoding, feature extraction,
speaker-independent splits, the ResLSTM-SA model, training, evaluation and the helpers
that the Beam pipelines in ``pipelines/`` are built from.
"""

__version__ = "0.1.0"
