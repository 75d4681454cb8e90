"""Bulk labelling helpers behind ``pipelines/label.py`` and ``ser score``.

Where to label (speech detectors, regions, windows) is :mod:`ser_core.segmentation`,
shared with the features stage.

- :mod:`~ser_core.inference.windows`: one recording -> its keyed windows with features,
  in bounded memory, without Beam (the pipeline and any plain-Python caller share it).
- :mod:`~ser_core.inference.engine`: the model that labels (a checkpoint in PyTorch or an
  exported ONNX file in onnxruntime) and how its training says audio should be cut.
- :mod:`~ser_core.inference.handler`: the Beam ``ModelHandler`` that loads the model once
  per worker and labels batches of variable-length windows.
- :mod:`~ser_core.inference.outputs`: the segments/files/timeline outputs: schemas, row
  builders, one file's rows from its labelled windows.
- :mod:`~ser_core.inference.summary`: seconds per emotion and role, thirds, merged turns.
- :mod:`~ser_core.inference.labeller`: :class:`Labeller`, the plain-Python API over the
  same pieces (one file at a time, no Beam).
- :mod:`~ser_core.inference.score`: segment-level UAR/accuracy against ground truth.
- :mod:`~ser_core.inference.report`: ``ser report``.

Nothing here imports ``ser_core.training`` (tests/test_layering.py checks it): the
checkpoint format, normalisation and metrics come from :mod:`ser_core.checkpoint`,
:mod:`ser_core.normalisation` and :mod:`ser_core.metrics`.

Output conventions shared by the pipeline and the scorer: a segment labelled on the
mixed-down signal has channel :data:`MIX_CHANNEL` and role :data:`MIX_ROLE`; class
probabilities are columns ``prob_<label>`` (:data:`ser_core.metrics.PROB_PREFIX`); a
segment whose confidence is below ``--min-confidence`` has the emotion :data:`UNCERTAIN`.
"""

MIX_CHANNEL = -1
MIX_ROLE = "mix"
UNCERTAIN = "uncertain"
