"""Decoding (ser_core.audio): formats, channels, resampling, precise errors, block streaming."""

import io
import pickle
import struct
import tracemalloc

import numpy as np
import pytest

from ser_core import audio
from ser_core.audio import AudioError
from tests.synth_audio import signal, write_audio


@pytest.mark.parametrize("subtype, fmt, tol", [
    ("PCM_U8", "WAV", 1e-2), ("PCM_16", "WAV", 1e-4), ("PCM_24", "WAV", 1e-6), ("PCM_32", "WAV", 1e-8),
    ("FLOAT", "WAV", 0), ("DOUBLE", "WAV", 0), ("ULAW", "WAV", 4e-2), ("ALAW", "WAV", 4e-2),
    ("PCM_16", "FLAC", 1e-4), ("PCM_24", "FLAC", 1e-6),
])
def test_load_reads_every_pcm_width_float_and_companded_wav_and_flac(tmp_path, subtype, fmt, tol):
    path = write_audio(tmp_path / f"x.{fmt.lower()}", duration_s=0.2, sample_rate=16000, subtype=subtype, format=fmt)

    y, sr = audio.load(path)

    assert sr == 16000 and y.dtype == np.float32 and y.shape == (3200,)
    assert np.abs(y - signal(0.2, 16000)).max() <= tol


def test_load_reads_ogg_vorbis(tmp_path):
    path = write_audio(tmp_path / "x.ogg", duration_s=0.5, sample_rate=16000, subtype="VORBIS", format="OGG")
    y, sr = audio.load(path)
    assert sr == 16000 and abs(len(y) - 8000) <= 64
    assert np.corrcoef(y[:7000], signal(0.5, 16000)[:7000])[0, 1] > 0.95  # lossy, but the same signal


def _with_extra_chunks(wav: bytes) -> bytes:
    """Insert LIST/INFO and bext chunks (as real RAVDESS files carry) before the data chunk."""
    data_at = wav.index(b"data")
    info = b"INFO" + b"ISFT" + struct.pack("<I", 6) + b"tests\x00"
    extra = b"LIST" + struct.pack("<I", len(info)) + info + b"bext" + struct.pack("<I", 10) + bytes(10)
    body = wav[12:data_at] + extra + wav[data_at:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def test_load_skips_extra_riff_chunks(tmp_path):
    plain = write_audio(tmp_path / "plain.wav", duration_s=0.1)
    chunky = tmp_path / "chunky.wav"
    chunky.write_bytes(_with_extra_chunks(plain.read_bytes()))

    assert b"bext" in chunky.read_bytes()
    np.testing.assert_array_equal(audio.load(chunky)[0], audio.load(plain)[0])


def test_stereo_is_mixed_to_mono_or_kept_channel_first(tmp_path):
    path = write_audio(tmp_path / "st.wav", duration_s=0.1, channels=2, subtype="FLOAT")
    data = signal(0.1, 16000, channels=2)

    mono, _ = audio.load(path)
    both, _ = audio.load(path, channels="separate")

    np.testing.assert_allclose(mono, data.mean(axis=1), atol=1e-7)
    assert both.shape == (2, 1600) and both.flags.c_contiguous
    np.testing.assert_array_equal(both, data.T)
    with pytest.raises(ValueError, match="channels"):
        audio.load(path, channels="left")


def test_resampling_keeps_duration_and_pitch(tmp_path):
    t = np.arange(44100) / 44100
    path = write_audio(tmp_path / "tone.wav", sample_rate=44100, subtype="FLOAT",
                       data=(0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))

    y, sr = audio.load(path, 16000)

    assert sr == 16000 and len(y) == 16000 and y.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(y[2000:-2000]))
    assert np.fft.rfftfreq(12000, 1 / 16000)[spectrum.argmax()] == pytest.approx(1000, abs=2)
    assert audio.load(path, 44100)[0].shape == (44100,)  # same rate: untouched


def test_info_reads_the_header(tmp_path):
    path = write_audio(tmp_path / "x.wav", duration_s=0.25, sample_rate=8000, channels=2, subtype="PCM_24")
    info = audio.info(path)
    assert (info.sample_rate, info.channels, info.frames, info.format, info.subtype) == (8000, 2, 2000, "WAV", "PCM_24")
    assert info.duration_s == pytest.approx(0.25) and info.truncated is None


def test_file_objects_decode_like_paths(tmp_path):
    path = write_audio(tmp_path / "x.wav", duration_s=0.3)
    with open(path, "rb") as fh:
        y, _ = audio.load(fh)
    blocks = list(audio.iter_blocks(io.BytesIO(path.read_bytes()), 0.1))
    np.testing.assert_array_equal(y, audio.load(path)[0])
    np.testing.assert_array_equal(np.concatenate(blocks), y)


# ---------------------------------------------------------------- precise errors


def _bad_files(tmp_path):
    good = write_audio(tmp_path / "good.wav", duration_s=1.0)
    raw = good.read_bytes()
    files = {
        "missing": (tmp_path / "missing.wav", "file not found"),
        "folder": (tmp_path, "not a regular file"),
        "empty": (tmp_path / "empty.wav", "empty file"),
        "text": (tmp_path / "text.wav", "not a readable audio file"),
        "header_cut": (tmp_path / "header_cut.wav", "not a readable audio file"),
        "truncated": (tmp_path / "truncated.wav", "truncated: data chunk declares 32000 bytes"),
        "no_frames": (tmp_path / "no_frames.wav", "no audio frames"),
        "nan": (tmp_path / "nan.wav", "non-finite"),
    }
    files["empty"][0].write_bytes(b"")
    files["text"][0].write_text("this is not audio\n")
    files["header_cut"][0].write_bytes(raw[:30])
    files["truncated"][0].write_bytes(raw[: len(raw) // 2])
    write_audio(files["no_frames"][0], data=np.zeros(0, np.float32))
    write_audio(files["nan"][0], subtype="FLOAT", data=np.array([0.1, np.nan, 0.2] * 100, np.float32))
    return files


def test_bad_files_raise_audio_error_with_path_and_reason(tmp_path):
    for name, (path, reason) in _bad_files(tmp_path).items():
        with pytest.raises(AudioError) as caught:
            audio.load(path)
        assert reason in caught.value.reason, name
        assert caught.value.path == str(path) and str(path) in str(caught.value)
        assert isinstance(caught.value, ValueError)


def test_truncated_wav_can_be_accepted_explicitly(tmp_path):
    path = _bad_files(tmp_path)["truncated"][0]
    y, _ = audio.load(path, allow_truncated=True)
    assert 0 < len(y) < 16000
    assert audio.info(path).truncated.startswith("truncated: data chunk declares 32000 bytes")
    np.testing.assert_array_equal(np.concatenate(list(audio.iter_blocks(path, 0.1))), y)


def test_too_short_is_an_error_only_below_the_minimum(tmp_path):
    path = write_audio(tmp_path / "short.wav", duration_s=0.005, sample_rate=48000)
    with pytest.raises(AudioError, match=r"too short: 0.005 s < 0.085 s"):
        audio.load(path, min_duration_s=0.085)
    assert audio.load(path)[0].shape == (240,)


def test_audio_error_survives_pickling_between_workers():
    err = pickle.loads(pickle.dumps(AudioError("/a/b.wav", "empty file (0 bytes)")))
    assert (err.path, err.reason, str(err)) == ("/a/b.wav", "empty file (0 bytes)", "empty file (0 bytes): /a/b.wav")


# ---------------------------------------------------------------- block streaming


@pytest.mark.parametrize("channels", ["mix", "separate"])
@pytest.mark.parametrize("native, target", [(44100, 16000), (8000, 8000), (16000, 48000)])
def test_blocks_join_to_the_whole_file_decode(tmp_path, channels, native, target):
    path = write_audio(tmp_path / "long.wav", duration_s=3.3, sample_rate=native, channels=2, subtype="PCM_24")
    whole, _ = audio.load(path, target, channels=channels)

    blocks = list(audio.iter_blocks(path, 0.7, target, channels=channels))

    block_len = round(0.7 * target)
    assert all(b.shape[-1] == block_len for b in blocks[:-1]) and 0 < blocks[-1].shape[-1] <= block_len
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in blocks)
    joined = np.concatenate(blocks, axis=-1)
    assert joined.shape == whole.shape
    np.testing.assert_allclose(joined, whole, atol=1e-5)


def test_block_streaming_memory_does_not_grow_with_file_length(tmp_path):
    # 120 s of 8 kHz stereo: the whole decode would hold ~7.7 MB of float32.
    path = write_audio(tmp_path / "call.wav", duration_s=120, sample_rate=8000, channels=2)
    tracemalloc.start()
    try:
        n = sum(b.shape[-1] for b in audio.iter_blocks(path, 1.0, 16000, channels="separate"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 120 * 16000
    assert peak < 1_000_000, f"peak {peak} bytes while streaming"


def test_block_streaming_errors(tmp_path):
    files = _bad_files(tmp_path)
    with pytest.raises(AudioError, match="no audio frames"):
        list(audio.iter_blocks(files["no_frames"][0], 1.0))
    with pytest.raises(AudioError, match="non-finite"):
        list(audio.iter_blocks(files["nan"][0], 1.0))
    with pytest.raises(AudioError, match="file not found"):
        next(audio.iter_blocks(files["missing"][0], 1.0))
    with pytest.raises(ValueError, match="block_s"):
        next(audio.iter_blocks(files["nan"][0], 0))
