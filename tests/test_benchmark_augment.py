"""benchmarks/augment.py times every augmentation on real clips: it must keep running."""

import importlib.util
import json

from ser_core.cli import main as ser
from ser_core.codebase import ROOT


def test_the_augmentation_benchmark_times_each_copy_against_the_features(tmp_path, real_ravdess):
    spec = importlib.util.spec_from_file_location("bench_augment", ROOT / "benchmarks" / "augment.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    manifest = tmp_path / "manifest.parquet"
    assert ser(["manifest", f"ravdess={real_ravdess}", "--output", str(manifest)]) == 0
    assert bench.main(["--manifest", str(manifest), "--clips", "2", "--repeats", "1",
                       "--names", "hiss,vtlp", "--out", str(tmp_path / "out")]) == 0
    figures = json.loads((tmp_path / "out" / "figures.json").read_text())
    assert figures["clips"] == 2 and set(figures["cpu_s_median"]) == {
        "features (logmel_deltas)", "hiss", "vtlp", bench.PLAIN}
    assert all(v > 0 for v in figures["cpu_s_median"].values())
