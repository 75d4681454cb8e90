"""Audio decoding: soundfile reads, soxr resamples; whole clips or fixed-size blocks.

soundfile (libsndfile, bundled in its wheels) reads WAV with any extra RIFF chunks
(LIST, bext, ...), PCM 8/16/24/32-bit, float, mu-law and A-law, and FLAC, OGG/Vorbis,
Opus and MP3. Samples come back as float32 in [-1, 1].

- :func:`load` decodes a whole utterance, downmixes (or keeps channels) and resamples.
- :func:`iter_blocks` streams a long recording in fixed-size blocks through a soxr
  stream resampler, so memory stays flat however long the file is.
- :func:`info` reads only the header.

Every failure is an :class:`AudioError` naming the file and the reason. Multichannel
arrays are channel-first, ``(channels, samples)``, as in librosa and torchaudio.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Union

import numpy as np
import soundfile as sf
import soxr

Source = Union[str, "os.PathLike[str]", BinaryIO]
CHANNEL_MODES = ("mix", "separate")
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_TRUNCATED_RE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


class AudioError(ValueError):
    """A file cannot be used as audio: unreadable, empty, too short, non-finite samples."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{reason}: {path}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # keep (path, reason) when pickled between Beam workers
        return type(self), (self.path, self.reason)


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str
    truncated: str | None = None  # why the file looks cut short, see :func:`truncation`

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _name(source: Source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<stream>"))


def _open(source: Source) -> sf.SoundFile:
    """Open for reading, turning every failure into an AudioError."""
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise AudioError(source, "file not found" if not os.path.exists(source) else "not a regular file")
        if os.path.getsize(source) == 0:
            raise AudioError(source, "empty file (0 bytes)")
    try:
        handle = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        detail = getattr(exc, "error_string", None) or str(exc)  # libsndfile's reason, without the path
        raise AudioError(_name(source), f"not a readable audio file ({detail})") from exc
    if handle.samplerate <= 0 or handle.channels <= 0:
        handle.close()
        raise AudioError(_name(source), "header has no sample rate or channels")
    return handle


def info(source: Source) -> AudioInfo:
    """Sample rate, channels, frames, format and subtype from the header (no decoding)."""
    with _open(source) as f:
        return AudioInfo(f.samplerate, f.channels, f.frames, f.format, f.subtype, truncation(f))


def _arrange(data: np.ndarray, channels: str) -> np.ndarray:
    """(frames, C) -> (frames,) mean over channels, or (C, frames) kept apart."""
    if channels == "mix":
        return np.ascontiguousarray(data[:, 0]) if data.shape[1] == 1 else data.mean(axis=1)
    return np.ascontiguousarray(data.T)


def _check_channels(channels: str) -> None:
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {CHANNEL_MODES}, got {channels!r}")


def resample(audio: np.ndarray, orig_sr: int, target_sr: int, quality: str = "HQ") -> np.ndarray:
    """soxr resampling of (samples,) or (channels, samples) float32 audio."""
    if orig_sr == target_sr:
        return audio
    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality=quality)
    return np.ascontiguousarray(soxr.resample(audio.T, orig_sr, target_sr, quality=quality).T)


def truncation(handle: sf.SoundFile) -> str | None:
    """Why a WAV-family file looks cut short (its data chunk is smaller than its header
    declares), or None. libsndfile silently decodes what is there; it only says so in
    its log. Placeholder sizes of streamed recordings (0, 0xFFFFFFFF) are not truncation."""
    match = _TRUNCATED_RE.search(handle.extra_info or "")
    if match is None:
        return None
    declared, actual = int(match.group(1)), int(match.group(2))
    if declared == 0 or declared >= 0xFFFFFFF0 or actual >= declared:
        return None
    return f"truncated: data chunk declares {declared} bytes, file holds {actual}"


def load(source: Source, sample_rate: int | None = None, *, channels: str = "mix",
         quality: str = "HQ", min_duration_s: float = 0.0,
         allow_truncated: bool = False) -> tuple[np.ndarray, int]:
    """Decode a whole file: float32 ``(samples,)`` (mix) or ``(channels, samples)`` (separate).

    Resamples to ``sample_rate`` (None keeps the file's rate) with soxr at ``quality``.
    Raises AudioError when the file is unreadable, truncated (unless
    ``allow_truncated``), holds no frames, is shorter than ``min_duration_s`` or holds
    NaN/inf samples (possible in float WAV).
    """
    _check_channels(channels)
    with _open(source) as f:
        name, native, subtype = _name(source), f.samplerate, f.subtype
        cut = None if allow_truncated else truncation(f)
        if cut:
            raise AudioError(name, cut)
        try:
            data = f.read(dtype="float32", always_2d=True)  # (frames, C)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(name, f"decoding failed ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(name, "no audio frames")
    duration = data.shape[0] / native
    if duration < min_duration_s:
        raise AudioError(name, f"too short: {duration:.3f} s < {min_duration_s:.3f} s")
    if subtype in _FLOAT_SUBTYPES and not np.isfinite(data).all():
        raise AudioError(name, f"{int((~np.isfinite(data)).sum())} non-finite (NaN/inf) samples")
    audio = _arrange(data, channels)
    target = sample_rate or native
    return resample(audio, native, target, quality), target


def iter_blocks(source: Source, block_s: float, sample_rate: int | None = None, *,
                channels: str = "mix", quality: str = "HQ") -> Iterator[np.ndarray]:
    """Stream a file as consecutive blocks of ``round(block_s * sample_rate)`` samples.

    Block k starts at sample ``k * block_len`` of the resampled signal; only the last
    block may be shorter. Shapes as :func:`load`. The file is read in pieces of about
    ``block_s`` and resampled with ``soxr.ResampleStream``, so memory does not grow
    with the file's length; the samples match :func:`load` to resampler precision.
    A truncated file streams what it holds (``info(...).truncated`` tells beforehand).
    """
    _check_channels(channels)
    if block_s <= 0:
        raise ValueError(f"block_s must be positive, got {block_s}")
    with _open(source) as f:
        name, native = _name(source), f.samplerate
        target = sample_rate or native
        block_len = max(1, int(round(block_s * target)))
        width = 1 if channels == "mix" else f.channels
        stream = (None if target == native else
                  soxr.ResampleStream(native, target, width, dtype="float32", quality=quality))
        pending: list[np.ndarray] = []  # (n, width) pieces not yet emitted
        n_pending = 0
        float_data = f.subtype in _FLOAT_SUBTYPES
        got_any = False
        for raw in f.blocks(blocksize=max(1, int(round(block_s * native))), dtype="float32", always_2d=True):
            got_any = got_any or len(raw) > 0
            if float_data and not np.isfinite(raw).all():
                raise AudioError(name, "non-finite (NaN/inf) samples")
            piece = raw.mean(axis=1, keepdims=True) if channels == "mix" and raw.shape[1] > 1 else raw
            if stream is not None:
                piece = stream.resample_chunk(np.ascontiguousarray(piece), last=False)
            pending.append(piece)
            n_pending += len(piece)
            while n_pending >= block_len:
                block, pending, n_pending = _take(pending, block_len)
                yield _shape(block, channels)
        if not got_any:
            raise AudioError(name, "no audio frames")
        if stream is not None:
            pending.append(stream.resample_chunk(np.zeros((0, width), np.float32), last=True))
            n_pending += len(pending[-1])
        while n_pending > 0:
            block, pending, n_pending = _take(pending, min(block_len, n_pending))
            yield _shape(block, channels)


def _take(pending: list[np.ndarray], n: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Split the first n rows off a list of (rows, width) pieces."""
    joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
    rest = joined[n:]
    return joined[:n], ([rest] if len(rest) else []), len(rest)


def _shape(block: np.ndarray, channels: str) -> np.ndarray:
    return np.ascontiguousarray(block[:, 0] if channels == "mix" else block.T)
