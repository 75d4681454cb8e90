"""Training and evaluation of ResLSTM-SA (the ``ser train`` and ``ser evaluate`` DVC stages).

- :mod:`.data`: features shards -> arrays, label selection;
- :mod:`.config`: ``TrainConfig`` (params.yaml ``train``) and the flags derived from it;
- :mod:`.fold`: one fold trained (masked loss across corpora, balanced epochs, the recipe's
  augmentations from :mod:`.augment`), its best validation epoch kept;
- :mod:`.train`: ``ser train``: every seed and fold, restarts, outputs, the final model
  for labelling;
- :mod:`.tune`, :mod:`.transfer`: recipes compared on validation speakers; transfer between
  corpora;
- :mod:`.evaluate`, :mod:`.results`: pooled out-of-fold UAR and the rest of
  ``metrics.json``, plots, report; docs/RESULTS.md.

What labelling shares with training lives beside the model, not here, so that the
labelling side never imports this package: :mod:`ser_core.checkpoint`,
:mod:`ser_core.normalisation`, :mod:`ser_core.batching`, :mod:`ser_core.metrics`.
"""
