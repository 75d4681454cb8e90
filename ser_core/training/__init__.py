"""Training and evaluation of ResLSTM-SA (the ``ser train`` and ``ser evaluate`` DVC stages).

- :mod:`.data`: features shards -> arrays, label selection;
- :mod:`.train`: speaker-independent cross-validation, best-validation checkpoints, the
  final model for labelling;
- :mod:`.evaluate`: pooled out-of-fold UAR and the rest of ``metrics.json``, plots, report.

What labelling shares with training lives beside the model, not here, so that the
labelling side never imports this package: :mod:`ser_core.checkpoint`,
:mod:`ser_core.normalisation`, :mod:`ser_core.batching`, :mod:`ser_core.metrics`.
"""
