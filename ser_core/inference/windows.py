"""One recording -> the keyed windows to label, with their features, in bounded memory.

Plain Python (no Beam): the labelling pipeline calls it from a DoFn, and any other caller
(a script, a plain-Python labelling API) gets exactly the same windows. Per file:

1. the header: sample rate, channels, length; the streams to label: one mixed-down
   stream (``channels='mix'``) or every channel, named by ``roles`` when the file has
   exactly that many channels (else ch0, ch1, ...);
2. for the energy detector only, pass 1 over the audio, block by block (``block_s``,
   resampled to the feature rate), until each stream's noise floor is known (usually the
   first block; constant memory), read in the same opening of the file as the header;
3. pass 2 (the only decoding pass for the webrtc and silero detectors and for fixed
   windows): speech regions -> windows -> features, spilled to a local temporary file
   while each stream's feature statistics accumulate (what ``speaker`` normalisation
   needs before any window is labelled);
4. reading back (:class:`FileWindows` iterated): each window as
   (:class:`SegmentKey`, :class:`SegmentExample`), with its stream's statistics.

No file is opened or decoded more than twice. Memory holds one block and the spill's
index, however long the recording. A failure
raises :class:`~ser_core.errors.FileError` naming the stage (``decode``, ``features``,
``spill``). Audio on a URL (gs://, ...) is opened through :mod:`ser_core.storage`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import numpy as np

from ser_core import audio
from ser_core.errors import FileError
from ser_core.features import FeatureConfig, make_extractor, warm_up
from ser_core.inference import MIX_CHANNEL, MIX_ROLE
from ser_core.segmentation import SegmentConfig, Segmenter, Window, make_detector
from ser_core.normalisation import RunningStats
from ser_core.storage import open_audio


class SegmentKey(NamedTuple):
    """What rides through inference beside each window."""

    path: str
    channel: int
    role: str
    start_s: float
    end_s: float


class SegmentExample(NamedTuple):
    """One window to label: raw features and, in speaker mode, its channel's statistics."""

    features: np.ndarray  # (T, D) float32, not normalised
    stats: Optional[tuple[np.ndarray, np.ndarray]] = None  # (mean (D,), std (D,))


@dataclass(frozen=True)
class FileInfo:
    """What is known of a file once its windows are cut (the files row is built from it)."""

    path: str
    duration_s: float
    sample_rate: int  # the file's own
    channels: int  # the file's own
    n_windows: int
    per_channel: tuple[dict[str, Any], ...]  # {channel, role, speech_s} per labelled stream


def channel_roles(n_channels: int, mode: str, roles: Sequence[str]) -> list[tuple[int, str]]:
    """(channel, role) per labelled stream: one mixed stream, or every channel named by
    ``roles`` when the file has exactly that many channels (else ch0, ch1, ...)."""
    if mode == "mix":
        return [(MIX_CHANNEL, MIX_ROLE)]
    named = len(roles) == n_channels
    return [(c, roles[c] if named else f"ch{c}") for c in range(n_channels)]


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or str(exc)  # AudioError keeps the path apart
    return f"{type(exc).__name__}: {reason}"


class _Spill:
    """A file's window features parked in a local temporary file between passes 2 and 3,
    with each stream's running feature statistics: memory holds only the index."""

    def __init__(self, n_streams: int, n_dims: int):
        self.file = tempfile.TemporaryFile(prefix="ser-label-")
        self.n_dims = n_dims
        self.stats = [RunningStats(n_dims) for _ in range(n_streams)]
        self.index: list[tuple[int, int, int, int]] = []  # (stream, start, end, frames)

    def add(self, stream: int, start: int, end: int, features: np.ndarray) -> None:
        self.stats[stream].update(features)
        self.file.write(np.ascontiguousarray(features, dtype=np.float32).tobytes())
        self.index.append((stream, start, end, features.shape[0]))

    def read(self) -> Iterator[tuple[int, int, int, np.ndarray]]:
        self.file.seek(0)
        for stream, start, end, frames in self.index:
            data = self.file.read(frames * self.n_dims * 4)
            yield stream, start, end, np.frombuffer(data, dtype=np.float32).reshape(frames, self.n_dims)

    def close(self) -> None:
        self.file.close()


class FileWindows:
    """A file's windows after passes 1 and 2: :attr:`info` is known, and :attr:`stats`
    (with ``speaker_stats``): per stream of :attr:`streams`, the (mean, std) over the
    frames of all its windows, overlapping windows counted as they are (None for a stream
    without windows), the statistics every window of that stream is normalised with.
    Iterating reads the windows back in order; :meth:`close` (or ``with``) deletes the spill."""

    def __init__(self, info: FileInfo, streams: Sequence[tuple[int, str]], spill: _Spill,
                 sample_rate: int, speaker_stats: bool):
        self.info = info
        self.streams = list(streams)  # (channel, role) per stream
        self._spill = spill
        self._sr = sample_rate
        self.stats: list[tuple[np.ndarray, np.ndarray] | None] = [
            s.result() if speaker_stats and s.n else None for s in spill.stats]

    def __iter__(self) -> Iterator[tuple[SegmentKey, SegmentExample]]:
        path = self.info.path
        try:
            for i, start, end, x in self._spill.read():
                channel, role = self.streams[i]
                yield SegmentKey(path, channel, role, start / self._sr, end / self._sr), \
                    SegmentExample(x, self.stats[i])
        except Exception as exc:
            raise FileError(path, "spill", _reason(exc)) from exc

    def close(self) -> None:
        self._spill.close()

    def __enter__(self) -> "FileWindows":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Windower:
    """Cuts recordings into keyed windows with features. Build one per worker: the
    front-end's filterbanks are made (and warmed up) here, once."""

    def __init__(self, feature_config: FeatureConfig, segment_config: SegmentConfig,
                 channels: str = "separate", roles: Sequence[str] = (), block_s: float = 30.0,
                 speaker_stats: bool = True):
        self.feature_config = feature_config
        self.segment_config = segment_config
        self.channels = channels
        self.roles = list(roles)
        self.block_s = block_s
        self.speaker_stats = speaker_stats
        warm_up(feature_config)
        self.extract = make_extractor(feature_config)  # (samples,) -> (T, D); shared by Labeller.predict_clip
        make_detector(segment_config, feature_config.sample_rate)  # a missing package fails here, once

    def open(self, path: str) -> FileWindows:
        """Passes 1 and 2 over ``path``; the caller iterates the result, then closes it.
        Raises :class:`FileError` with the stage that failed."""
        stage, spill = "decode", None
        fc, sr = self.feature_config, self.feature_config.sample_rate
        try:
            with open_audio(path) as source:
                header = audio.info(source)
                streams = channel_roles(header.channels, self.channels, self.roles)
                detectors = [make_detector(self.segment_config, sr, self.feature_config.band_hz)
                             for _ in streams]
                if any(d is not None and d.two_pass for d in detectors):
                    # pass 1 (energy detector): each stream's noise floor, in the same opening
                    for block in self._blocks(source):
                        for detector, samples in zip(detectors, block):
                            if not detector.observed_enough:
                                detector.observe(samples)
                        if all(d.observed_enough for d in detectors):
                            break  # the floors are known: the rest of the file can wait
            # pass 2 (the only one for other detectors): speech -> windows -> features,
            # spilled; statistics accumulate
            segs = [Segmenter(self.segment_config, sr, d) for d in detectors]
            spill = _Spill(len(streams), fc.n_dims)
            n_samples = 0
            with open_audio(path) as source:
                for block in self._blocks(source):
                    n_samples += block.shape[1]
                    for i, (seg, samples) in enumerate(zip(segs, block)):
                        windows = seg.feed(samples)
                        stage = "features"
                        self._add(spill, i, windows)
                        stage = "decode"
            for i, seg in enumerate(segs):
                windows = seg.flush()
                stage = "features"
                self._add(spill, i, windows)
                stage = "decode"
        except Exception as exc:  # every failure of one file is that file's error
            if spill is not None:
                spill.close()
            raise FileError(path, stage, _reason(exc)) from exc
        per_channel = tuple({"channel": c, "role": r, "speech_s": seg.speech_samples / sr}
                            for (c, r), seg in zip(streams, segs))
        info = FileInfo(path, n_samples / sr, header.sample_rate, header.channels, len(spill.index),
                        per_channel)
        return FileWindows(info, streams, spill, sr, self.speaker_stats)

    def _blocks(self, source: Any) -> Iterator[np.ndarray]:
        """An opened file's blocks as (streams, samples) arrays at the feature rate."""
        fc = self.feature_config
        if hasattr(source, "seek"):  # a URL's handle, read a second time in this opening
            source.seek(0)
        for block in audio.iter_blocks(source, self.block_s, fc.sample_rate,
                                       channels=self.channels, quality=fc.resample_quality):
            yield block[None, :] if block.ndim == 1 else block

    def _add(self, spill: _Spill, stream: int, windows: Sequence[Window]) -> None:
        for w in windows:
            spill.add(stream, w.start, w.end, self.extract(w.samples))  # (T, D)
