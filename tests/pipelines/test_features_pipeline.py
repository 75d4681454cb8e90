"""pipelines/features.py end to end: a corpus of bad inputs, exact row accounting, schema and
metadata, the same numbers as the library, params/flags, and the three runner paths."""

import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import features as pipeline
from pipelines.common import shard_of
from ser_core import audio
from ser_core.corpora import prepare
from ser_core.cli import main as ser_main
from ser_core.errors import StageError
from ser_core.feature_shards import read_feature_config
from ser_core.features import FeatureConfig, extract
from ser_core.records import Utterance, write_manifest
from ser_core.storage import read_shards
from tests.synth_audio import signal, touch_tree, write_audio

# name -> expected outcome: None (a features row) or (stage, words of the reason)
EXPECTED = {
    "good": None, "stereo": None, "pcm8": None, "pcm24": None, "float": None,
    "rate16k": None, "rate44k_flac": None, "silent": None,
    "truncated": ("decode", "truncated"),
    "zero_bytes": ("decode", "empty file"),
    "text": ("decode", "not a readable audio file"),
    "five_ms": ("decode", "too short"),
    "deleted": ("decode", "file not found"),
    "nan": ("decode", "non-finite"),
}


def make_bad_corpus(root):
    """One file per case in EXPECTED, and a manifest listing them all."""
    files = {
        "good": write_audio(root / "good.wav", 0.5, 48000),
        "stereo": write_audio(root / "stereo.wav", 0.5, 48000, channels=2),
        "pcm8": write_audio(root / "pcm8.wav", 0.5, 48000, subtype="PCM_U8"),
        "pcm24": write_audio(root / "pcm24.wav", 0.5, 48000, subtype="PCM_24"),
        "float": write_audio(root / "float.wav", 0.5, 48000, subtype="FLOAT"),
        "rate16k": write_audio(root / "rate16k.wav", 0.5, 16000),
        "rate44k_flac": write_audio(root / "rate44k.flac", 0.5, 44100),
        "silent": write_audio(root / "silent.wav", 0.5, 48000, data=np.zeros(24000, np.float32)),
        "truncated": root / "truncated.wav",
        "zero_bytes": root / "zero_bytes.wav",
        "text": root / "text.wav",
        "five_ms": write_audio(root / "five_ms.wav", 0.005, 48000),
        "deleted": write_audio(root / "deleted.wav", 0.5, 48000),
        "nan": write_audio(root / "nan.wav", sample_rate=48000, subtype="FLOAT",
                           data=np.r_[signal(0.5, 48000), np.nan].astype(np.float32)),
    }
    whole = write_audio(root / "whole.wav", 1.0, 48000).read_bytes()
    files["truncated"].write_bytes(whole[: len(whole) // 2])
    files["zero_bytes"].write_bytes(b"")
    files["text"].write_text("RIFF? no, just text\n")
    utterances = [
        Utterance(name, "test", str(path), f"test:{i % 3}", ("male", "female")[i % 2], "neutral",
                  {"case": name})
        for i, (name, path) in enumerate(files.items())
    ]
    manifest = root / "manifest.parquet"
    write_manifest(utterances, manifest)
    files["deleted"].unlink()  # listed, then gone before the run
    return manifest, files


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    return make_bad_corpus(tmp_path_factory.mktemp("bad_corpus"))


@pytest.fixture(scope="module")
def in_memory_run(bad_corpus, tmp_path_factory):
    manifest, files = bad_corpus
    out = tmp_path_factory.mktemp("features_out")
    summary = pipeline.run(["--manifest", str(manifest), "--output", str(out)])
    return summary, out, files


def outcomes(out):
    """utterance_id -> None (features row) or (stage, error), failing on any duplicate."""
    rows = read_shards(str(out), "features", ["utterance_id"]).column("utterance_id").to_pylist()
    errors = read_shards(str(out), "errors").to_pylist()
    result = {uid: None for uid in rows}
    for e in errors:
        assert e["utterance_id"] not in result, f"{e['utterance_id']} both written and failed"
        result[e["utterance_id"]] = (e["stage"], e["error"])
    assert len(result) == len(rows) + len(errors), "an utterance appears twice"
    return result


def assert_expected(out):
    got = outcomes(out)
    assert set(got) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        if expected is None:
            assert got[name] is None, f"{name}: {got[name]}"
        else:
            assert got[name] is not None, f"{name} should have failed"
            stage, error = got[name]
            assert stage == expected[0] and expected[1] in error, f"{name}: {got[name]}"


def test_every_bad_input_ends_as_exactly_one_row_or_error(in_memory_run):
    summary, out, files = in_memory_run
    assert_expected(out)
    assert (summary.manifest_rows, summary.rows, summary.errors) == (14, 8, 6)
    assert summary.audio_s == pytest.approx(8 * 0.5, abs=0.01)
    errors = read_shards(str(out), "errors").to_pylist()
    assert all(e["path"] == str(files[e["utterance_id"]]) for e in errors)


def test_features_schema_metadata_and_values(in_memory_run):
    _, out, files = in_memory_run
    (shard,) = sorted(out.glob("features-*.parquet"))
    table = pq.read_table(shard)
    config = FeatureConfig()

    assert table.schema.names == ["utterance_id", "corpus", "path", "speaker", "gender", "emotion", "custom",
                                  "source_id", "variant", "start_s", "end_s", "n_frames", "sample_rate",
                                  "features"]
    assert json.loads(table.schema.metadata[b"ser.rows"]) == {
        "augment": [], "segmentation": {"mode": "none", "segment_config": None}}
    assert table.schema.field("n_frames").type == pa.int32() and table.schema.field("sample_rate").type == pa.int32()
    assert table.schema.field("features").type == pa.list_(pa.list_(pa.float32()))
    assert json.loads(table.schema.metadata[b"ser.features"]) == config.to_dict()
    assert FeatureConfig.from_dict(read_feature_config(str(shard))) == config
    provenance = json.loads(table.schema.metadata[b"ser.provenance"])
    assert provenance["manifest_rows"] == 14 and "librosa" in provenance

    rows = {r["utterance_id"]: r for r in table.to_pylist()}
    for name, row in rows.items():
        feats = np.asarray(row["features"], dtype=np.float32)
        assert feats.shape == (row["n_frames"], 46) and np.isfinite(feats).all()
        assert row["sample_rate"] == 48000 and row["n_frames"] == 12  # 0.5 s at any input rate
        assert json.loads(row["custom"]) == {"case": name} and row["speaker"].startswith("test:")
        assert (row["source_id"], row["variant"], row["start_s"]) == (name, "", 0.0)
        assert row["end_s"] == pytest.approx(0.5, abs=1e-3)
    expected = extract(config, audio.load(files["stereo"], 48000)[0])
    # Same code; only float32 rounding may differ (workers run BLAS single-threaded).
    np.testing.assert_allclose(np.asarray(rows["stereo"]["features"], np.float32), expected, rtol=1e-5, atol=1e-5)


def test_rerun_clears_old_shards_and_flags_override_params(bad_corpus, tmp_path):
    manifest, _ = bad_corpus
    out = tmp_path / "out"
    out.mkdir()
    (out / "features-00007-of-00009.parquet").write_bytes(b"stale")
    (out / "notes.txt").write_text("kept")
    params = tmp_path / "params.yaml"
    params.write_text("features:\n  kind: logmel\n  n_mels: 40\n  sample_rate: 48000\n")

    summary = pipeline.run(["--manifest", str(manifest), "--output", str(out), "--params", str(params),
                            "--sample-rate", "16000"])

    assert not (out / "features-00007-of-00009.parquet").exists() and (out / "notes.txt").exists()
    assert not list(out.glob("beam-temp-*"))
    assert summary.rows + summary.errors == 14
    config = FeatureConfig.from_dict(read_feature_config(str(next(out.glob("features-*.parquet")))))
    assert (config.kind, config.n_mels, config.sample_rate, config.n_dims) == ("logmel", 40, 16000, 40)
    table = read_shards(str(out), "features")
    assert set(table.column("sample_rate").to_pylist()) == {16000}
    assert {len(f[0]) for f in table.column("features").to_pylist()} == {40}


@pytest.mark.parametrize("extra, params, message", [
    (["--fmax", "30000"], None, "fmax <= 24000"),
    ([], "features:\n  n_mfcc: 20\n  n_mfccs: 3\n", "unknown FeatureConfig parameter"),
    (["--params", "missing.yaml"], None, "params file not found"),
])
def test_bad_settings_stop_before_any_work(bad_corpus, tmp_path, extra, params, message):
    manifest, _ = bad_corpus
    if params:
        (tmp_path / "params.yaml").write_text(params)
        extra = [*extra, "--params", str(tmp_path / "params.yaml")]
    with pytest.raises(StageError, match=message):
        pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path / "o"), *extra])
    assert not (tmp_path / "o").exists()


def test_missing_or_non_manifest_input_stops_before_any_work(tmp_path):
    with pytest.raises(StageError, match="manifest not found"):
        pipeline.run(["--manifest", str(tmp_path / "nope.parquet"), "--output", str(tmp_path / "o")])
    pq.write_table(pa.table({"path": ["a.wav"]}), tmp_path / "other.parquet")
    with pytest.raises(StageError, match="missing columns"):
        pipeline.run(["--manifest", str(tmp_path / "other.parquet"), "--output", str(tmp_path / "o")])


def test_dofns_route_each_failure_to_its_stage(tmp_path):
    good = write_audio(tmp_path / "good.wav", 0.2, 48000)
    config = FeatureConfig()
    def row(uid, path):
        return Utterance(uid, "test", path, "test:1", "female", "happy").to_row()

    rows = [row("ok", str(good)), row("gone", str(tmp_path / "x.wav")), {**row("nulls", str(good)), "speaker": None}]
    bad_decoded = pipeline.Decoded({"utterance_id": "nan", "path": "n.wav"},
                                   np.full(5000, np.nan, np.float32), 48000)

    with BeamTestPipeline() as p:
        decoded, decode_failed = (p | "Rows" >> beam.Create(rows)
                                  | beam.ParDo(pipeline.DecodeFn(config)).with_exception_handling())
        feats, feature_failed = ((decoded, p | "Bad" >> beam.Create([bad_decoded])) | beam.Flatten()
                                 | beam.ParDo(pipeline.ExtractFn(config)).with_exception_handling())
        errors = ((decode_failed | "D" >> beam.ParDo(pipeline.DeadLetterToErrorRow("decode", pipeline.manifest_row_of)),
                   feature_failed | "F" >> beam.ParDo(pipeline.DeadLetterToErrorRow("features", pipeline.manifest_row_of)))
                  | "E" >> beam.Flatten())
        assert_that(feats | beam.Map(lambda r: (r["utterance_id"], r["n_frames"], r["features"].shape)),
                    equal_to([("ok", 5, (5, 46))]), label="features")
        assert_that(errors | beam.Map(lambda e: (e["utterance_id"], e["stage"], e["error"].split(":")[0])),
                    equal_to([("gone", "decode", "ser_core.audio.AudioError"),
                              ("nulls", "decode", "ValueError"),
                              ("nan", "features", "ser_core.features.FeatureError")]), label="errors")


@pytest.mark.slow
def test_multi_processing_with_two_workers(bad_corpus, tmp_path):
    manifest, _ = bad_corpus
    summary = pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path),
                            "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"])
    assert_expected(tmp_path)
    assert (summary.rows, summary.errors) == (8, 6)


@pytest.mark.slow
def test_portable_runner_loopback(bad_corpus, tmp_path):
    manifest, _ = bad_corpus
    summary = pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path), "--runner", "PortableRunner",
                            "--job_endpoint", "embed", "--environment_type", "LOOPBACK"])
    assert_expected(tmp_path)
    assert (summary.rows, summary.errors) == (8, 6)


@pytest.mark.slow
def test_real_ravdess_clips(real_ravdess, tmp_path):
    manifest = tmp_path / "manifest.parquet"
    write_manifest(prepare("ravdess", str(real_ravdess), strict=True).utterances, manifest)

    summary = pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path / "out")])

    assert (summary.rows, summary.errors) == (144, 0)
    table = read_shards(str(tmp_path / "out"), "features")
    frames = np.array(table.column("n_frames").to_pylist())
    assert table.num_rows == 144 and set(table.column("sample_rate").to_pylist()) == {48000}
    assert frames.min() >= 70 and frames.max() <= 115
    dims = {len(frame) for clip in table.column("features").to_pylist() for frame in clip}
    assert dims == {46}
    assert len(set(table.column("speaker").to_pylist())) == 24


def test_ser_features_command_runs_the_pipeline(bad_corpus, tmp_path, capsys):
    manifest, _ = bad_corpus
    assert ser_main(["features", "--manifest", str(manifest), "--output", str(tmp_path)]) == 0
    assert "8 rows + 6 errors = 14 of 14 manifest rows" in capsys.readouterr().out


def test_dvc_stage_and_params_match_the_feature_config():
    """The DVC stage `features` runs this pipeline, depends on its code and on the whole
    `features` section (so no FeatureConfig field can be left untracked), and the
    params.yaml section builds a valid config."""
    root = Path(__file__).resolve().parents[2]
    stage = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["features"]["do"]  # a foreach stage
    assert "ser features" in stage["cmd"]
    params = {p for p in stage["params"] if isinstance(p, str)}
    assert "features" in params
    assert {"pipelines/features.py", "pipelines/common.py", "ser_core/audio.py", "ser_core/features.py"} <= set(
        stage["deps"])
    # the `features` section and each variant build a valid front-end and row settings
    # (the variant's copies: the command passes --augment ${item.augment})
    assert "--augment ${item.augment}" in stage["cmd"] and "variants.${key}" in params
    assert "--kind ${item.kind}" in stage["cmd"] and "--sample-rate ${item.sample_rate}" in stage["cmd"]
    for variant in yaml.safe_load((root / "params.yaml").read_text())["variants"].values():
        args, _ = pipeline.parse_known_args(["--manifest", "m", "--output", "o", "--params", str(root / "params.yaml"),
                                             "--augment", variant["augment"], "--kind", variant["kind"],
                                             "--sample-rate", str(variant["sample_rate"])])
        config, rows = pipeline.resolve_config(args)
        assert isinstance(config, FeatureConfig) and list(rows.augment) == variant["augment"].split(",")
        assert (config.kind, config.sample_rate) == (variant["kind"], variant["sample_rate"])


def test_augmented_rows_one_per_variant_and_whole_clips_fail_once(bad_corpus, tmp_path):
    manifest, _ = bad_corpus
    out = tmp_path / "aug"
    summary = pipeline.run(["--manifest", str(manifest), "--output", str(out),
                            "--augment", "speed0.9,noise20,telephone"])
    assert (summary.variants, summary.utterances, summary.rows, summary.errors) == (4, 8, 32, 6)
    table = read_shards(str(out), "features")
    rows = {r["utterance_id"]: r for r in table.to_pylist()}
    assert json.loads(table.schema.metadata[b"ser.rows"])["augment"] == ["speed0.9", "noise20", "telephone"]
    for source in ("good", "stereo", "silent"):
        variants = {r["variant"]: r for r in rows.values() if r["source_id"] == source}
        assert sorted(variants) == ["", "noise20", "speed0.9", "telephone"]
        assert variants["speed0.9"]["utterance_id"] == f"{source}@speed0.9"
        assert variants["speed0.9"]["end_s"] == pytest.approx(0.5 / 0.9, abs=1e-3)  # slower: longer
        assert {r["speaker"] for r in variants.values()} == {variants[""]["speaker"]}
        assert all(np.isfinite(np.asarray(r["features"], np.float32)).all() for r in variants.values())
    good = {v: np.asarray(rows[f"good@{v}" if v else "good"]["features"], np.float32) for v in ("", "noise20")}
    assert not np.allclose(good[""], good["noise20"])
    # bad files: one error each, never a partial set of rows
    assert not any(r["source_id"] in ("truncated", "nan", "five_ms") for r in rows.values())
    # deterministic: a second run writes the same rows
    again = pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path / "aug2"),
                          "--augment", "speed0.9,noise20,telephone"])
    rows2 = {r["utterance_id"]: r for r in read_shards(str(tmp_path / "aug2"), "features").to_pylist()}
    assert again.rows == 32 and all(rows2[k]["features"] == v["features"] for k, v in rows.items())


def test_unknown_augmentation_is_refused_before_work(bad_corpus, tmp_path):
    manifest, _ = bad_corpus
    with pytest.raises(StageError, match="unknown augmentation 'echo'"):
        pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path / "x"), "--augment", "echo"])


def _speech_clip(path, seed):
    """1 s of silence, 4 s of the demo synthesiser's speech, 1 s of silence at 16 kHz."""
    rng = np.random.default_rng(seed)
    sr = 16000
    t = np.arange(4 * sr) / sr
    voiced = 0.3 * np.sin(2 * np.pi * 150 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    y = np.concatenate([np.zeros(sr), voiced + 0.01 * rng.standard_normal(len(t)), np.zeros(sr)])
    return write_audio(path, sample_rate=sr, data=y.astype(np.float32))


@pytest.mark.parametrize("mode", ["speech", "windows"])
def test_segmentation_cuts_training_clips_as_labelling_cuts_calls(tmp_path, mode):
    from ser_core.segmentation import SegmentConfig, segment_channel

    files = [_speech_clip(tmp_path / f"c{i}.wav", i) for i in range(2)]
    silent = write_audio(tmp_path / "silent.wav", 2.0, 16000, data=np.zeros(32000, np.float32))
    utterances = [Utterance(p.stem, "test", str(p), "test:0", "male", "happy", {}) for p in files + [silent]]
    manifest = tmp_path / "m.parquet"
    write_manifest(utterances, manifest)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"features": {"sample_rate": 16000, "kind": "logmel", "n_mels": 40,
                                                   "window_s": 0.025, "hop_s": 0.01, "segmentation": mode},
                                      "label": {"window_s": 2.0, "hop_s": 1.0}}))
    out = tmp_path / "out"
    summary = pipeline.run(["--manifest", str(manifest), "--output", str(out), "--params", str(params)])
    table = read_shards(str(out), "features")
    meta = json.loads(table.schema.metadata[b"ser.rows"])
    assert meta["segmentation"]["mode"] == mode and meta["segmentation"]["segment_config"]["window_s"] == 2.0
    errors = read_shards(str(out), "errors").to_pylist()
    assert [(e["utterance_id"], e["stage"]) for e in errors] == [("silent", "features")]
    assert "no speech detected" in errors[0]["error"]
    assert summary.utterances == 2 and summary.errors == 1
    seg = SegmentConfig(window_s=2.0, hop_s=1.0)
    for path in files:
        y, _ = audio.load(str(path), 16000)
        windows, _ = segment_channel(y, 16000, seg)
        mine = sorted((r for r in table.to_pylist() if r["source_id"] == path.stem), key=lambda r: r["start_s"])
        if mode == "speech":
            assert len(mine) == 1 and mine[0]["utterance_id"] == path.stem
            assert mine[0]["start_s"] == pytest.approx(windows[0].start / 16000)
            assert mine[0]["end_s"] == pytest.approx(windows[-1].end / 16000)
            assert 0.8 < mine[0]["start_s"] < 1.0 and 5.0 < mine[0]["end_s"] < 5.2  # the silence is cut off
        else:
            assert [(r["start_s"], r["end_s"]) for r in mine] == [(w.start / 16000, w.end / 16000) for w in windows]
            assert [r["utterance_id"] for r in mine] == [f"{path.stem}#w{k:03d}" for k in range(len(windows))]
            assert len(mine) >= 3 and {r["emotion"] for r in mine} == {"happy"}


@pytest.mark.slow
def test_relative_manifest_paths_and_shards_that_depend_on_the_rows_alone(tmp_path):
    """Rows keep the manifest's relative paths (files found through its metadata); each row
    is in shard crc32(id) % N, sorted by id, so one in-memory worker and two processes
    write the same bytes."""
    names = [f"Actor_0{a}/03-01-0{e}-01-01-01-0{a}.wav" for a in (1, 2, 3) for e in (1, 3, 5)]
    touch_tree(tmp_path / "corpus", names, duration_s=0.3, sample_rate=16000)
    manifest = tmp_path / "data" / "manifest.parquet"
    assert ser_main(["manifest", f"ravdess={tmp_path / 'corpus'}", "--output", str(manifest)]) == 0
    common = ["--manifest", str(manifest), "--sample-rate", "16000", "--num-shards", "3"]

    pipeline.run([*common, "--output", str(tmp_path / "one")])
    pipeline.run([*common, "--output", str(tmp_path / "two"), "--direct_running_mode", "multi_processing",
                  "--direct_num_workers", "2"])

    shards = sorted(p.name for p in (tmp_path / "one").glob("features-*.parquet"))
    assert shards == [f"features-0000{i}-of-00003.parquet" for i in range(3)]
    for name in shards + ["errors-00000-of-00001.parquet"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    seen = []
    for i, name in enumerate(shards):
        ids = pq.read_table(tmp_path / "one" / name, columns=["utterance_id"]).column(0).to_pylist()
        assert ids == sorted(ids) and all(shard_of(uid, 3) == i for uid in ids)
        seen += ids
    rows = read_shards(str(tmp_path / "one"), "features", ["utterance_id", "path"]).to_pylist()
    assert sorted(seen) == sorted(f"ravdess:{Path(n).stem}" for n in names)
    assert {r["path"] for r in rows} == set(names)  # as the manifest has them: relative


def test_mel_range_flags_take_none_for_nyquist(tmp_path):
    """The DVC chain passes each variant's mel range; 'none' for fmax means Nyquist."""
    params = tmp_path / "params.yaml"
    params.write_text("features:\n  kind: logmel_deltas\n  n_mels: 23\n")
    base = ["--manifest", "m.parquet", "--output", "o", "--params", str(params)]
    args, _ = pipeline.parse_known_args([*base, "--sample-rate", "8000", "--fmin", "300", "--fmax", "3400"])
    config, _ = pipeline.resolve_config(args)
    assert (config.fmin, config.fmax, config.n_dims) == (300.0, 3400.0, 46)
    args, _ = pipeline.parse_known_args([*base, "--fmin", "0", "--fmax", "none"])
    config, _ = pipeline.resolve_config(args)
    assert (config.fmin, config.fmax) == (0.0, None)


def test_real_ravdess_clips_through_the_pretrained_speaker_encoder(real_ravdess, tmp_path):
    """The speaker_encoder front-end in the Beam pipeline: every real clip one row of 256-dim
    frames, equal to the front-end run on the clip decoded at 16 kHz, the config in the schema."""
    manifest = tmp_path / "manifest.parquet"
    utterances = [u for u in prepare("ravdess", str(real_ravdess), strict=True).utterances
                  if u.speaker in ("ravdess:01", "ravdess:02")]
    write_manifest(utterances, manifest)

    summary = pipeline.run(["--manifest", str(manifest), "--output", str(tmp_path / "out"),
                            "--kind", "speaker_encoder", "--sample-rate", "16000"])

    assert (summary.rows, summary.errors) == (len(utterances), 0) and len(utterances) == 16
    table = read_shards(str(tmp_path / "out"), "features")
    config = FeatureConfig.from_dict(read_feature_config(str(next((tmp_path / "out").glob("features-*.parquet")))))
    assert (config.kind, config.sample_rate, config.n_dims) == ("speaker_encoder", 16000, 256)
    row = next(r for r in table.to_pylist() if r["utterance_id"] == utterances[0].utterance_id)
    y, _ = audio.load(utterances[0].path, 16000)
    np.testing.assert_allclose(np.asarray(row["features"], np.float32), extract(config, y), rtol=1e-5, atol=1e-5)


def test_a_worker_caps_the_encoders_torch_threads_and_restores_them():
    """A features worker running the speaker encoder (torch) holds torch's intra-op pool to one
    thread, as it does BLAS's (one worker per core), and gives the old width back at teardown."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fn = pipeline.ExtractFn(FeatureConfig(kind="speaker_encoder", sample_rate=16000))
        fn.setup()
        assert torch.get_num_threads() == 1
        fn.teardown()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
