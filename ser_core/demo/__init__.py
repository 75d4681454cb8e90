"""Generated data: the embedded demo (so a fresh clone runs end to end with no download)
and call archives mixed from a real corpus.

- :mod:`ser_core.demo.synth`: the source-filter speech synthesiser behind both.
- :mod:`ser_core.demo.corpus`: ``ser demo-corpus``, a corpus in RAVDESS's exact layout.
- :mod:`ser_core.demo.archive`: ``ser demo-archive``, stereo call recordings with a
  ground-truth sidecar so bulk labelling can be scored.
- :mod:`ser_core.demo.calls`: ``ser mix-calls``, the same kind of calls made of real
  labelled clips (a manifest), to measure labelling on real speech.
- :mod:`ser_core.demo.telephone`: what both call writers share: the telephone band, line
  noise, the block-by-block WAV writer and the sidecar.
"""
