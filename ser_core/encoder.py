"""A pretrained speaker encoder as a front-end: frames that have heard thousands of voices.

Every other front-end of :mod:`ser_core.features` is signal processing: what it measures of
emotion is whatever the model trained on top learns from the corpora given, and a model
trained on RAVDESS's 24 actors learns them. This one is a network trained on someone else's
data: the speaker encoder of Wan et al. (2018), *Generalized end-to-end loss for speaker
verification*, as Resemblyzer ships it (three LSTM layers of 256 units over 40 mel bands of
16 kHz audio, trained on LibriSpeech, VoxCeleb 1 and 2: thousands of speakers, many
languages). Its frames are the last LSTM layer's outputs, 256 numbers every 10 ms: a
description of the voice learnt from far more voices than any emotion corpus has, which is
what carries from one corpus to another (``docs/RESULTS.md``, "Between corpora").

Only the weights are taken from the ``resemblyzer`` package (Apache-2.0; its wheel holds
them, ``pretrained.pt``, 17 MB, so nothing is downloaded at run time); the package is never
imported, and is installed without its dependencies (:data:`INSTALL`; ``make setup`` does). The analysis is the encoder's own, restated on :mod:`ser_core.spectral`: the
clip brought up to -30 dBFS if quieter (never turned down), the centred power spectrum of
25 ms Hann windows every 10 ms, 40 Slaney mel bands, power (not dB), into the LSTM. The LSTM
runs over the whole clip (or labelling window) at once; the embedding head (a linear layer
over the last state) is not used.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from ser_core.spectral import hann_window, mel_basis, power_spectrogram

SAMPLE_RATE = 16000
N_FFT = 400          # 25 ms
HOP = 160            # 10 ms
N_MELS = 40
N_DIMS = 256         # the last LSTM layer's width
N_LAYERS = 3
TARGET_DBFS = -30.0  # quieter clips are raised to this; louder ones are left as they are
WEIGHTS_PACKAGE = "resemblyzer"
WEIGHTS_FILE = "pretrained.pt"
# Without its dependencies: the weights are all that is used, and its webrtcvad (an sdist) would
# overwrite the module of webrtcvad-wheels (the speech detector's) with one needing pkg_resources.
INSTALL = "pip install --no-deps resemblyzer==0.1.4"


class EncoderUnavailable(RuntimeError):
    """The package that holds the encoder's weights is not installed, or its file is not there."""


def weights_path() -> Path:
    """Where the installed ``resemblyzer`` package keeps the weights (found without importing
    the package, whose own imports this front-end does not need)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailable(f"the {WEIGHTS_PACKAGE} package (its wheel holds the encoder's weights) is "
                                 f"not installed: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.is_file():
        raise EncoderUnavailable(f"{path} is missing: reinstall {WEIGHTS_PACKAGE}")
    return path


@functools.lru_cache(maxsize=1)
def load_lstm():
    """The encoder's LSTM with its pretrained weights, in eval mode (torch is imported here,
    so that the other front-ends never load it)."""
    import torch
    from torch import nn

    state = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state"]
    lstm = nn.LSTM(N_MELS, N_DIMS, N_LAYERS, batch_first=True)
    lstm.load_state_dict({k.removeprefix("lstm."): v for k, v in state.items() if k.startswith("lstm.")})
    lstm.eval()
    for parameter in lstm.parameters():
        parameter.requires_grad_(False)
    return lstm


def raise_to_dbfs(y: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """``y`` scaled up so that its RMS level is ``target_dbfs`` when it is quieter; louder
    audio and digital silence are returned unchanged."""
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms <= 0.0:
        return y
    gain = 10.0 ** ((target_dbfs - 20.0 * np.log10(rms)) / 20.0)
    return (y * np.float32(gain)).astype(np.float32) if gain > 1.0 else y


def mel_power(y: np.ndarray) -> np.ndarray:
    """The encoder's input: (frames, 40) mel power of 16 kHz ``y`` (librosa's
    ``melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40)``, transposed)."""
    return power_spectrogram(y, N_FFT, HOP, hann_window(N_FFT)) @ mel_basis(SAMPLE_RATE, N_FFT, N_MELS, 0.0, None)


def frames(y: np.ndarray) -> np.ndarray:
    """(frames, 256) float32: the last LSTM layer's output for every 10 ms frame of 16 kHz
    mono ``y`` (one frame per centred STFT frame, as :func:`mel_power` gives them)."""
    import torch

    mel = mel_power(raise_to_dbfs(np.asarray(y, dtype=np.float32)))
    with torch.inference_mode():
        out, _ = load_lstm()(torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))[None])
    return out[0].numpy()
