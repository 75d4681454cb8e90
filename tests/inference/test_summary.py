"""Per-call summaries: time attributed by nearest window centre, shares in seconds, thirds,
and the merged timeline, all checked against hand-computed numbers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ser_core.inference.summary import (TIMELINE_SCHEMA, dominant, emotion_seconds, owned_pieces,
                                        role_schema, shares, summarise_file)

LABELS = ["neutral", "angry", "sad"]


def seg(start, end, emotion, confidence=0.5, channel=0, role="agent", path="call.wav"):
    return {"path": path, "channel": channel, "role": role, "start_s": float(start), "end_s": float(end),
            "emotion": emotion, "confidence": confidence}


def test_overlapping_windows_split_time_at_the_midpoints_of_their_centres():
    # a 7 s region cut as ser label cuts it: 3 s windows every 1.5 s, the last aligned to the end
    assert owned_pieces([0, 1.5, 3, 4], [3, 4.5, 6, 7]) == [(0, 2.25, 0), (2.25, 3.75, 1), (3.75, 5.0, 2), (5.0, 7, 3)]
    # order does not matter; gaps stay gaps; a short window inside a long one owns what is nearer to it
    assert owned_pieces([10, 0], [13, 3]) == [(0, 3, 1), (10, 13, 0)]
    assert owned_pieces([0, 3], [10, 5]) == [(0, 3, 0), (3, 4.5, 1), (4.5, 10, 0)]  # centres 5 and 4
    assert owned_pieces([], []) == []


def test_shares_are_seconds_not_window_counts():
    # two windows each: counting windows says 50/50; angry's windows own 2.25 + 1.5 = 3.75 s of 7 s
    rows = [seg(0, 3, "angry"), seg(1.5, 4.5, "angry"), seg(3, 6, "neutral"), seg(4, 7, "neutral")]
    seconds = emotion_seconds(rows)
    assert seconds == pytest.approx({"angry": 3.75, "neutral": 3.25})
    assert shares(seconds, LABELS) == pytest.approx({"share_neutral": 3.25 / 7, "share_angry": 3.75 / 7, "share_sad": 0})
    assert dominant(seconds, LABELS) == "angry"
    # channels are attributed separately, then summed
    both = rows + [seg(0, 3, "sad", channel=1, role="customer")]
    assert emotion_seconds(both) == pytest.approx({"angry": 3.75, "neutral": 3.25, "sad": 3.0})


def test_dominant_breaks_ties_by_label_order_and_is_none_without_speech():
    assert dominant({"sad": 2.0, "angry": 2.0}, LABELS) == "angry"
    assert dominant({}, LABELS) is None
    assert dominant({"boredom": 5.0}, LABELS) is None  # outside the labels: speech, but no share


def test_per_role_rows_with_thirds():
    rows = [seg(0, 3, "angry"), seg(1.5, 4.5, "angry"), seg(3, 6, "neutral"), seg(4, 7, "neutral"),
            seg(10, 13, "sad", 0.9), seg(20, 23, "neutral", channel=1, role="customer")]
    roles, _ = summarise_file("call.wav", rows, LABELS, duration_s=30.0,
                              channels=[(0, "agent"), (1, "customer"), (2, "supervisor")])
    agent, customer, silent = roles
    assert agent["speech_s"] == pytest.approx(10.0) and agent["n_segments"] == 5
    assert agent["share_angry"] == pytest.approx(0.375) and agent["share_sad"] == pytest.approx(0.3)
    assert agent["dominant_emotion"] == "angry"  # 3.75 s; neutral 3.25 s, sad 3 s
    # thirds of 30 s: [0, 10) holds all of the first region, [10, 20) the sad window
    assert [agent[f"speech_s_third_{i}"] for i in (1, 2, 3)] == pytest.approx([7.0, 3.0, 0.0])
    assert [agent[f"dominant_emotion_third_{i}"] for i in (1, 2, 3)] == ["angry", "sad", None]
    assert [customer[f"dominant_emotion_third_{i}"] for i in (1, 2, 3)] == [None, None, "neutral"]
    assert (silent["role"], silent["speech_s"], silent["dominant_emotion"], silent["share_neutral"]) == \
        ("supervisor", 0, None, 0.0)
    # a window across a third's boundary counts in both, by the seconds on each side
    roles, _ = summarise_file("call.wav", [seg(8, 11, "sad")], LABELS, duration_s=30.0)
    assert [roles[0][f"speech_s_third_{i}"] for i in (1, 2, 3)] == pytest.approx([2.0, 1.0, 0.0])
    pa.Table.from_pylist(roles, schema=role_schema(LABELS))  # rows fit their schema


def test_timeline_joins_same_label_windows_and_never_overlaps():
    rows = [seg(0, 3, "angry", 0.9), seg(1.5, 4.5, "angry", 0.7), seg(3, 6, "neutral", 0.6),
            seg(4, 7, "neutral", 0.8),
            seg(8.5, 11.5, "neutral", 0.4),   # 1.5 s after the last neutral window: joined
            seg(13.01, 16.01, "neutral", 0.5),  # 1.51 s after: a new turn
            seg(16, 19, "sad", 1.0, channel=1, role="customer")]
    _, turns = summarise_file("call.wav", rows, LABELS)
    agent = [t for t in turns if t["channel"] == 0]
    got = [(t["turn"], t["start_s"], t["end_s"], t["emotion"], t["n_segments"]) for t in agent]
    assert got == [(0, 0.0, 3.75, "angry", 2), (1, 3.75, 11.5, "neutral", 3), (2, 13.01, 16.01, "neutral", 1)]
    assert [t["confidence"] for t in agent] == pytest.approx([0.8, 0.6, 0.5])
    assert [t["speech_s"] for t in agent] == pytest.approx([3.75, 3.25 + 3.0, 3.0])  # the joined gap is not speech
    assert [(t["channel"], t["role"], t["turn"], t["start_s"], t["end_s"]) for t in turns if t["channel"] == 1] == \
        [(1, "customer", 0, 16.0, 19.0, )]
    # the turns' seconds per emotion are the summary's seconds
    by_emotion = {}
    for t in turns:
        by_emotion[t["emotion"]] = by_emotion.get(t["emotion"], 0.0) + t["speech_s"]
    assert by_emotion == pytest.approx(emotion_seconds(rows))
    pa.Table.from_pylist(turns, schema=TIMELINE_SCHEMA)


def test_a_different_label_between_two_same_label_windows_splits_the_turn():
    rows = [seg(0, 3, "angry"), seg(1.5, 4.5, "sad"), seg(3, 6, "angry")]
    _, turns = summarise_file("call.wav", rows, LABELS, max_gap_s=10.0)
    assert [(t["start_s"], t["end_s"], t["emotion"]) for t in turns] == \
        [(0.0, 2.25, "angry"), (2.25, 3.75, "sad"), (3.75, 6.0, "angry")]


def test_without_segments_and_with_stray_rows():
    assert summarise_file("call.wav", [], LABELS) == ([], [])
    roles, turns = summarise_file("call.wav", [], LABELS, duration_s=5.0, channels=[(-1, "mix")])
    assert (roles[0]["channel"], roles[0]["speech_s"], turns) == (-1, 0, [])
    with pytest.raises(ValueError, match="other files.*other.wav"):
        summarise_file("call.wav", [seg(0, 3, "sad", path="other.wav")], LABELS)


def test_uncertain_seconds_are_speech_in_their_own_share_and_never_dominant():
    rows = [seg(0, 3, "uncertain"), seg(1.5, 4.5, "uncertain"), seg(3, 6, "sad"), seg(4, 7, "uncertain")]
    roles, turns = summarise_file("call.wav", rows, LABELS, duration_s=7.0, detected_s={0: 7.4})
    (agent,) = roles
    # uncertain windows own 0-3.75 and 5-7 s (5.75 s), sad 3.75-5 s
    assert agent["speech_s"] == pytest.approx(7.0) and agent["detected_s"] == 7.4
    assert agent["share_uncertain"] == pytest.approx(5.75 / 7) and agent["share_sad"] == pytest.approx(1.25 / 7)
    assert agent["dominant_emotion"] == "sad"  # the most common confident emotion
    assert [(t["emotion"], t["start_s"], t["end_s"]) for t in turns] == [
        ("uncertain", 0.0, 3.75), ("sad", 3.75, 5.0), ("uncertain", 5.0, 7.0)]
    roles, _ = summarise_file("call.wav", [seg(0, 3, "uncertain")], LABELS)
    assert roles[0]["dominant_emotion"] is None and roles[0]["share_uncertain"] == 1.0
    assert roles[0]["detected_s"] is None  # not given
    pa.Table.from_pylist(roles, schema=role_schema(LABELS))
