"""Training and evaluation of ResLSTM-SA (the ``ser train`` and ``ser evaluate`` DVC stages).

- :mod:`.data`: features shards -> arrays, label selection, normalisation, padded batches;
- :mod:`.train`: speaker-independent cross-validation, best-validation checkpoints, the
  final model for labelling;
- :mod:`.evaluate`: pooled out-of-fold UAR and the rest of ``metrics.json``, plots, report;
- :mod:`.checkpoint`: self-describing checkpoints and :func:`~.checkpoint.load_checkpoint`.
"""
