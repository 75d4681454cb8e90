"""The embedded demo data: generated, so a fresh clone runs end to end with no download.

- :mod:`ser_core.demo.synth`: the source-filter speech synthesiser behind both.
- :mod:`ser_core.demo.corpus`: ``ser demo-corpus``, a corpus in RAVDESS's exact layout.
- :mod:`ser_core.demo.archive`: ``ser demo-archive``, stereo call recordings with a
  ground-truth sidecar so bulk labelling can be scored.
"""
