"""Speech detectors: which frames of one audio stream are speech, decided block by block.

Three detectors share one streaming interface
(:class:`~ser_core.segmentation.frames.FrameDetector`), so the windowing
(:class:`~ser_core.segmentation.regions.Segmenter`) does not care which one decides:

- ``energy`` (:class:`~ser_core.segmentation.energy.EnergyDetector`, the default): frame energy against the line's
  noise floor, two passes. The floor is measured on the line's *stationary* stretches
  only: aligned chunks of ``floor_chunk_s`` whose frame energies stay within
  ``stationary_db`` of each other (line hiss, hum; speech is rarely that steady), that
  are not digital silence and not louder than ``max_floor_db`` (a steady sound that loud
  is a signal: a held tone or vowel). At any moment the floor is the lowest level among
  the ``floor_track_s`` worth of such chunks nearest before (pass 1,
  :class:`~ser_core.segmentation.energy.FloorStart`, finds the first ones, where the floor starts), and frames
  louder than ``floor + margin_db`` and than ``min_db`` are speech. Pass 1 stops as soon
  as those first chunks are found, so on a line with pauses it reads seconds, not the file. A channel with no
  such chunk at all (speech from start to end) has no floor: its threshold is
  ``min_db``. So a channel that is speech throughout is not measured against itself, a
  busy channel's floor is its pauses, steady line noise is not speech, and a line whose
  level changes is followed.
- ``webrtc`` (:class:`WebRtcDetector`): Google's WebRTC voice activity detector
  (``webrtcvad-wheels``, MIT): a Gaussian mixture over six sub-band log energies, with
  its own hang-over. 16-bit frames of 10, 20 or 30 ms (``frame_s``) at 8, 16, 32 or
  48 kHz; ``webrtc_mode`` 0-3 is its aggressiveness (higher: fewer false alarms, more
  missed speech). One pass.
- ``silero`` (:class:`SileroDetector`): the Silero VAD network (``silero-vad``, MIT; its
  wheel ships the ONNX model, run here with onnxruntime, offline) on 32 ms chunks
  (256 samples at 8 kHz, 512 at 16 kHz) with its recurrent state carried across chunks.
  A chunk is speech from ``silero_threshold`` on, and stays speech while the probability
  is above ``silero_threshold - 0.15`` (Silero's own hysteresis). One pass; by far the
  most expensive (see the README's detector comparison).

Each detector works at its own rate and block size: see :mod:`ser_core.segmentation.frames`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import numpy as np

from ser_core.segmentation.energy import EnergyDetector
from ser_core.segmentation.frames import (DetectorConfig, DetectorUnavailable, FrameDetector, WEBRTC_FRAMES_S,
                                          nearest_rate)

WEBRTC_RATES = (8000, 16000, 32000, 48000)
SILERO_RATES = (8000, 16000)
SILERO_CHUNK = {8000: 256, 16000: 512}   # samples per decision (32 ms)
SILERO_CONTEXT = {8000: 32, 16000: 64}   # samples of the previous chunk the model also sees
SILERO_HYSTERESIS = 0.15                 # speech continues down to threshold - this
SILERO_MODEL = "silero_vad.onnx"         # in the silero_vad package's data/ folder

__all__ = ["EnergyDetector", "WebRtcDetector", "SileroDetector", "make_detector", "silero_model_path",
           "WEBRTC_FRAMES_S"]


class WebRtcDetector(FrameDetector):
    """WebRTC VAD decisions, one per frame of ``frame_s`` (10, 20 or 30 ms)."""

    def __init__(self, config: "DetectorConfig", sample_rate: int) -> None:
        try:
            import webrtcvad
        except ImportError as exc:
            if exc.name not in (None, "webrtcvad"):  # a webrtcvad module is there; what it imports is not
                raise DetectorUnavailable(
                    f"segmentation 'webrtc': the installed webrtcvad module cannot be imported ({exc}): "
                    "another package's webrtcvad.py has replaced webrtcvad-wheels' (the 'webrtcvad' sdist "
                    "does, which `pip install resemblyzer` pulls in without --no-deps); repair it with "
                    "pip install --force-reinstall --no-deps webrtcvad-wheels") from exc
            raise DetectorUnavailable("segmentation 'webrtc' needs the webrtcvad-wheels package "
                                      "(pip install webrtcvad-wheels)") from exc
        rate = nearest_rate(sample_rate, WEBRTC_RATES)
        super().__init__(sample_rate, rate, int(round(config.frame_s * rate)))
        self._vad = webrtcvad.Vad(int(config.webrtc_mode))

    def _classify(self, frames: np.ndarray) -> np.ndarray:
        pcm = np.round(np.clip(frames, -1.0, 32767 / 32768) * 32768).astype("<i2")
        return np.fromiter((self._vad.is_speech(f.tobytes(), self.rate) for f in pcm),
                           dtype=bool, count=len(pcm))


def silero_model_path() -> str:
    """The Silero VAD ONNX model inside the installed ``silero-vad`` wheel (found without
    importing the package: its ``__init__`` imports torch and sets torch's thread count)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable("segmentation 'silero' needs the silero-vad package (pip install silero-vad)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", SILERO_MODEL)
    if not os.path.isfile(path):
        raise DetectorUnavailable(f"the silero-vad package has no model at {path} (expected its wheel's "
                                  f"data/{SILERO_MODEL})")
    return path


@functools.lru_cache(maxsize=1)
def silero_session() -> Any:
    """The Silero model, loaded once per process, on one thread (labelling runs one worker
    per core)."""
    path = silero_model_path()
    try:
        import onnxruntime
    except ImportError as exc:
        raise DetectorUnavailable("segmentation 'silero' needs onnxruntime (pip install onnxruntime)") from exc
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


class SileroDetector(FrameDetector):
    """Silero VAD speech probabilities per 32 ms chunk, thresholded with hysteresis."""

    def __init__(self, config: "DetectorConfig", sample_rate: int) -> None:
        rate = nearest_rate(sample_rate, SILERO_RATES)
        super().__init__(sample_rate, rate, SILERO_CHUNK[rate])
        self._session = silero_session()
        self.threshold = float(config.silero_threshold)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, SILERO_CONTEXT[rate]), dtype=np.float32)
        self._rate = np.array(rate, dtype=np.int64)
        self._speech = False

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """(n, chunk) -> (n,) speech probabilities, advancing the model's state."""
        out = np.empty(len(frames), dtype=np.float32)
        for i, frame in enumerate(frames):
            x = np.concatenate([self._context, frame[None, :]], axis=1)
            prob, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._rate})
            self._context = x[:, -self._context.shape[1]:]
            out[i] = prob[0, 0]
        return out

    def _classify(self, frames: np.ndarray) -> np.ndarray:
        out = np.empty(len(frames), dtype=bool)
        low = max(self.threshold - SILERO_HYSTERESIS, 0.01)
        for i, p in enumerate(self.probabilities(frames)):
            self._speech = p >= self.threshold or (self._speech and p >= low)
            out[i] = self._speech
        return out


def make_detector(config: "DetectorConfig", sample_rate: int,
                  band_hz: tuple[float, float] | None = None) -> FrameDetector | None:
    """The detector ``config.segmentation`` names for one stream (None for 'fixed'),
    listening within ``band_hz`` when given (the model's band: :class:`BandFilter`)."""
    kind = config.detector
    if kind is None:
        return None
    kinds = {"energy": EnergyDetector, "webrtc": WebRtcDetector, "silero": SileroDetector}
    return kinds[kind](config, sample_rate).listen_within(band_hz)
