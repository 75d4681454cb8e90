"""``ser score``: truth by greatest overlap on the same channel, counts of what is not scored,
exact UAR/accuracy on a hand-made case, the CLI end to end."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_core import cli
from ser_core.inference.score import read_ground_truth, score

LABELS = ["angry", "sad", "neutral"]
TRUTH = """path,channel,role,start_s,end_s,emotion
calls/a.wav,0,agent,0.0,4.0,neutral
calls/a.wav,0,agent,4.0,10.0,angry
calls/a.wav,1,customer,0.0,10.0,sad
calls/b.wav,1,customer,2.0,3.0,boredom
"""


def segments_table(rows):
    """rows: (path, channel, start, end, emotion)."""
    cols = list(zip(*rows))
    data = {"path": cols[0], "channel": pa.array(cols[1], pa.int32()), "role": ["x"] * len(rows),
            "start_s": cols[2], "end_s": cols[3], "emotion": cols[4],
            "confidence": pa.array([0.9] * len(rows), pa.float32())}
    for label in LABELS:
        data["prob_" + label] = pa.array([0.3] * len(rows), pa.float32())
    return pa.table(data)


def write_case(tmp_path):
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "ground_truth.csv").write_text(TRUTH)
    a = str(tmp_path / "archive" / "calls" / "a.wav")
    b = str(tmp_path / "archive" / "calls" / "b.wav")
    rows = [
        (a, 0, 0.5, 3.5, "neutral"),   # neutral, right
        (a, 0, 2.0, 5.0, "neutral"),   # 2 s neutral vs 1 s angry -> neutral, right
        (a, 0, 3.5, 6.5, "sad"),       # angry (2.5 s) -> wrong
        (a, 0, 6.0, 9.0, "angry"),     # angry, right
        (a, 1, 1.0, 4.0, "sad"),       # channel 1: sad, right
        (a, 0, 11.0, 12.0, "angry"),   # overlaps no turn
        (a, -1, 9.5, 12.5, "angry"),   # mixed down: angry (ch 0) and sad (ch 1) tie at 0.5 s -> first listed
        (b, 1, 2.0, 3.0, "sad"),       # truth boredom: not a model label
        (str(tmp_path / "elsewhere.wav"), 0, 0.0, 1.0, "sad"),  # file without ground truth
    ]
    segdir = tmp_path / "labels"
    segdir.mkdir()
    pq.write_table(segments_table(rows), segdir / "segments-r1-00000-of-00001.parquet")
    return segdir, tmp_path / "archive" / "ground_truth.csv"


def test_score_exact(tmp_path):
    segdir, truth = write_case(tmp_path)
    table = pq.read_table(next(segdir.glob("*.parquet")))
    metrics, rows = score(table, LABELS, read_ground_truth(truth))
    assert [r["actual"] for r in rows] == ["neutral", "neutral", "angry", "angry", "sad", "angry"]
    assert metrics["n_scored"] == 6 and metrics["n_segments"] == 9
    assert metrics["n_segments_no_turn"] == 1
    assert metrics["n_segments_unknown_file"] == 1
    assert metrics["n_turns"] == 4 and metrics["turn_coverage"] == 1.0
    assert metrics["truth_outside_labels"] == {"boredom": 1}
    assert metrics["per_class_recall"] == pytest.approx({"angry": 2 / 3, "sad": 1.0, "neutral": 1.0})
    assert metrics["uar"] == pytest.approx((2 / 3 + 1.0 + 1.0) / 3)
    assert metrics["wa"] == pytest.approx(5 / 6)
    assert metrics["confusion"] == [[2, 1, 0], [0, 1, 0], [0, 0, 2]]  # rows actual, columns predicted


def test_score_cli_writes_metrics_and_confusion(tmp_path, capsys):
    segdir, truth = write_case(tmp_path)
    out = tmp_path / "reports" / "label_metrics.json"
    conf = tmp_path / "reports" / "label_confusion.csv"
    assert cli.main(["score", "--segments", str(segdir), "--ground-truth", str(truth),
                     "--output", str(out), "--confusion", str(conf)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["n_scored"] == 6
    assert conf.read_text().splitlines()[0] == "actual,predicted"
    assert len(conf.read_text().splitlines()) == 7
    assert "UAR" in capsys.readouterr().out


def test_missing_columns_are_refused(tmp_path):
    bad = tmp_path / "gt.csv"
    bad.write_text("path,start_s,end_s,emotion\na.wav,0,1,sad\n")
    with pytest.raises(ValueError, match="channel"):
        read_ground_truth(bad)


def test_uncertain_segments_are_wrong_and_coverage_is_reported(tmp_path):
    """The hand-made case with two right segments made uncertain (--min-confidence)."""
    segdir, truth = write_case(tmp_path)
    table = pq.read_table(next(segdir.glob("*.parquet")))
    emotions = table.column("emotion").to_pylist()
    emotions[0] = emotions[4] = "uncertain"  # a right neutral, the right sad
    table = table.set_column(table.schema.get_field_index("emotion"), "emotion", pa.array(emotions))
    metrics, rows = score(table, LABELS, read_ground_truth(truth))
    assert metrics["n_scored"] == 6 and metrics["n_uncertain"] == 2
    # uncertain = wrong: neutral 1/2, sad 0/1, angry 2/3
    assert metrics["per_class_recall"] == pytest.approx({"angry": 2 / 3, "sad": 0.0, "neutral": 0.5})
    assert metrics["uar"] == pytest.approx((2 / 3 + 0.0 + 0.5) / 3)
    assert metrics["wa"] == pytest.approx(3 / 6)
    # the confident four: neutral right, angry wrong (sad), angry right twice
    assert metrics["coverage"] == pytest.approx(4 / 6)
    assert metrics["wa_confident"] == pytest.approx(3 / 4)
    assert metrics["uar_confident"] == pytest.approx((2 / 3 + 1.0) / 2)  # sad has no confident segment
    assert metrics["uncertain_per_class"] == {"sad": 1, "neutral": 1}
    assert metrics["confusion"] == [[2, 1, 0], [0, 0, 0], [0, 0, 1]]
    assert [r["predicted"] for r in rows].count("uncertain") == 2
    emotions[1] = "bored"
    table = table.set_column(table.schema.get_field_index("emotion"), "emotion", pa.array(emotions))
    with pytest.raises(ValueError, match="'bored' is neither one of the labels"):
        score(table, LABELS, read_ground_truth(truth))
