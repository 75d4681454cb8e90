"""What a call-centre team reads from labelled windows: seconds, shares, a timeline.

Pure functions over ``ser label``'s segment rows (mappings with ``path, channel, role,
start_s, end_s, emotion, confidence``); no Beam, so the labelling pipeline, ``ser
report`` and a notebook compute the same numbers.

**Time, not windows.** The labelled windows overlap (3 s every 1.5 s by default), so
counting windows over-weights nothing in particular but measures no unit a reader knows.
Here every instant of a channel that some window covers belongs to exactly ONE window:
the covering window whose centre is nearest (ties: the earlier-starting one). These
owned pieces tile the labelled time without overlap, so

- ``speech_s`` is the labelled time (the union of the windows); ``detected_s``, when the
  caller knows it, the speech the detector found (regions shorter than ``min_speech_s``
  are found but not labelled, so it can be larger), and
- the seconds of an emotion are the owned seconds of the windows labelled with it;
  ``share_<label>`` divides them by ``speech_s``, and the dominant emotion has the most
  seconds (ties: earlier in ``labels``). Windows below ``--min-confidence`` carry the
  emotion :data:`~ser_core.inference.UNCERTAIN`: their seconds are speech, counted in
  ``share_uncertain``, and never dominant (the dominant emotion is the most common of
  the confident ones). Other emotions outside ``labels`` count as speech but in no share
  column.

**Course of the call.** The call (``duration_s``) is cut into thirds; per third and
role: the labelled seconds in it and their dominant emotion.

**Timeline.** Per channel, windows in time order are joined into one turn while they
carry the same emotion and the next starts at most ``max_gap_s`` (default: the
labelling hop, 1.5 s) after the turn's windows end. A turn runs from the first to the
last instant its windows own (so turns of one channel never overlap), ``speech_s`` is
the time they own (the start-to-end span minus any joined gaps), ``confidence`` the
mean of its windows' confidences.

:func:`summarise_file` turns one file's segment rows into (per-role rows, timeline rows)
of :func:`role_schema` and :data:`TIMELINE_SCHEMA`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from ser_core.inference import UNCERTAIN

DEFAULT_MAX_GAP_S = 1.5  # the labelling hop: windows further apart belong to separate turns
N_PARTS = 3              # the course of a call: thirds
Piece = tuple[float, float, int]  # (start_s, end_s, index of the window that owns it)


def owned_pieces(starts: Sequence[float], ends: Sequence[float]) -> list[Piece]:
    """Pieces tiling the union of the windows ``[starts[i], ends[i])``, in time order, each
    owned by the covering window whose centre is nearest (ties: earlier start, lower index)."""
    starts, ends = [float(s) for s in starts], [float(e) for e in ends]
    n = len(starts)
    centres = [(s + e) / 2 for s, e in zip(starts, ends)]
    order = sorted(range(n), key=lambda i: (starts[i], ends[i], i))
    cuts = sorted(set(starts) | set(ends))
    pieces: list[Piece] = []
    active: list[int] = []
    k = 0
    for a, b in zip(cuts, cuts[1:]):
        while k < n and starts[order[k]] <= a:
            active.append(order[k])
            k += 1
        active = [i for i in active if ends[i] > a]
        if not active:
            continue
        inner = sorted({m for i in active for j in active if i < j
                        for m in [(centres[i] + centres[j]) / 2] if a < m < b})
        for x0, x1 in zip([a, *inner], [*inner, b]):
            mid = (x0 + x1) / 2
            owner = min(active, key=lambda i: (abs(mid - centres[i]), starts[i], i))
            if pieces and pieces[-1][2] == owner and pieces[-1][1] == x0:
                pieces[-1] = (pieces[-1][0], x1, owner)
            else:
                pieces.append((x0, x1, owner))
    return pieces


def _by_channel(segments: Iterable[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
    out: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for s in segments:
        out[int(s["channel"])].append(s)
    return {ch: sorted(rows, key=lambda s: (s["start_s"], s["end_s"])) for ch, rows in out.items()}


def _seconds(rows: Sequence[Mapping[str, Any]], pieces: Sequence[Piece],
             span: tuple[float, float] | None = None) -> dict[str, float]:
    """Owned seconds per emotion (within ``span`` when given)."""
    out: dict[str, float] = defaultdict(float)
    for a, b, i in pieces:
        if span is not None:
            a, b = max(a, span[0]), min(b, span[1])
        if b > a:
            out[rows[i]["emotion"]] += b - a
    return dict(out)


def emotion_seconds(segments: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Labelled seconds per emotion, each channel's time attributed by nearest window
    centre, summed over channels (what a files row's ``share_*`` should be made of)."""
    total: dict[str, float] = defaultdict(float)
    for rows in _by_channel(segments).values():
        pieces = owned_pieces([r["start_s"] for r in rows], [r["end_s"] for r in rows])
        for emotion, sec in _seconds(rows, pieces).items():
            total[emotion] += sec
    return dict(total)


def shares(seconds: Mapping[str, float], labels: Sequence[str]) -> dict[str, float]:
    """``share_<label>`` columns: each label's seconds over all labelled seconds (0 without speech)."""
    total = sum(seconds.values())
    return {f"share_{label}": (seconds.get(label, 0.0) / total if total > 0 else 0.0) for label in labels}


def dominant(seconds: Mapping[str, float], labels: Sequence[str]) -> str | None:
    """The label with the most seconds (ties: earlier in ``labels``); None with none."""
    best = max(labels, key=lambda label: (seconds.get(label, 0.0), -labels.index(label)), default=None)
    return best if best is not None and seconds.get(best, 0.0) > 0 else None


def uncertain_share(seconds: Mapping[str, float]) -> float:
    """``share_uncertain``: the seconds of windows below the confidence threshold over all
    labelled seconds (0 without speech)."""
    total = sum(seconds.values())
    return seconds.get(UNCERTAIN, 0.0) / total if total > 0 else 0.0


def role_schema(labels: Sequence[str]) -> pa.Schema:
    """Per-role summary rows: one per file and channel."""
    fields = [pa.field("path", pa.string()), pa.field("channel", pa.int32()), pa.field("role", pa.string()),
              pa.field("duration_s", pa.float64()), pa.field("speech_s", pa.float64()),
              pa.field("detected_s", pa.float64()),  # null when not known
              pa.field("n_segments", pa.int32()), pa.field("dominant_emotion", pa.string())]
    fields += [pa.field(f"share_{label}", pa.float64()) for label in labels]
    fields.append(pa.field(f"share_{UNCERTAIN}", pa.float64()))
    for part in range(1, N_PARTS + 1):
        fields += [pa.field(f"speech_s_third_{part}", pa.float64()),
                   pa.field(f"dominant_emotion_third_{part}", pa.string())]
    return pa.schema(fields)


TIMELINE_SCHEMA = pa.schema([
    pa.field("path", pa.string()), pa.field("channel", pa.int32()), pa.field("role", pa.string()),
    pa.field("turn", pa.int32()),  # index within the channel, in time order
    pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()), pa.field("speech_s", pa.float64()),
    pa.field("emotion", pa.string()), pa.field("confidence", pa.float32()), pa.field("n_segments", pa.int32()),
])


def timeline(rows: Sequence[Mapping[str, Any]], pieces: Sequence[Piece],
             max_gap_s: float = DEFAULT_MAX_GAP_S) -> list[dict[str, Any]]:
    """One channel's windows (sorted by start) joined into turns, see the module doc."""
    owned: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for a, b, i in pieces:
        owned[i].append((a, b))
    groups: list[list[int]] = []
    reach = float("-inf")
    for i, r in enumerate(rows):
        if groups and rows[groups[-1][0]]["emotion"] == r["emotion"] and r["start_s"] - reach <= max_gap_s:
            groups[-1].append(i)
        else:
            groups.append([i])
            reach = float("-inf")
        reach = max(reach, r["end_s"])
    turns = []
    for n, group in enumerate(groups):
        own = [span for i in group for span in owned[i]]
        # every window of a group can be eclipsed by others (odd layouts): then its windows' span
        spans = own or [(rows[i]["start_s"], rows[i]["end_s"]) for i in group]
        first = rows[group[0]]
        turns.append({"path": first["path"], "channel": int(first["channel"]), "role": first["role"],
                      "turn": n, "start_s": min(a for a, _ in spans), "end_s": max(b for _, b in spans),
                      "speech_s": sum(b - a for a, b in own), "emotion": first["emotion"],
                      "confidence": sum(float(rows[i]["confidence"]) for i in group) / len(group),
                      "n_segments": len(group)})
    return turns


def summarise_file(path: str, segments: Iterable[Mapping[str, Any]], labels: Sequence[str], *,
                   duration_s: float | None = None, channels: Sequence[tuple[int, str]] | None = None,
                   max_gap_s: float = DEFAULT_MAX_GAP_S, detected_s: Mapping[int, float] | None = None,
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-role rows, timeline rows) of one file.

    ``channels`` lists the file's labelled (channel, role) pairs, so a channel without a
    segment still gets a row (0 s of speech); by default the channels its segments name.
    ``duration_s`` (for the thirds) defaults to the end of the last segment. ``detected_s``
    (channel -> the detector's speech seconds) fills ``detected_s`` (null where not given).
    """
    segments = list(segments)
    strays = sorted({str(s["path"]) for s in segments} - {path})
    if strays:
        raise ValueError(f"summarise_file({path!r}) was given segments of other files: {strays[:3]}")
    by_channel = _by_channel(segments)
    if duration_s is None:
        duration_s = max((float(s["end_s"]) for s in segments), default=0.0)
    roles = dict(channels) if channels is not None else {}
    for ch, rows in by_channel.items():
        roles.setdefault(ch, rows[0]["role"])
    role_rows, timeline_rows = [], []
    for ch in sorted(roles):
        rows = by_channel.get(ch, [])
        pieces = owned_pieces([r["start_s"] for r in rows], [r["end_s"] for r in rows])
        seconds = _seconds(rows, pieces)
        row: dict[str, Any] = {"path": path, "channel": ch, "role": roles[ch], "duration_s": float(duration_s),
                               "speech_s": sum(b - a for a, b, _ in pieces),
                               "detected_s": None if detected_s is None or ch not in detected_s else float(detected_s[ch]),
                               "n_segments": len(rows), "dominant_emotion": dominant(seconds, labels),
                               **shares(seconds, labels), f"share_{UNCERTAIN}": uncertain_share(seconds)}
        for part in range(N_PARTS):
            span = (duration_s * part / N_PARTS, duration_s * (part + 1) / N_PARTS)
            if part == N_PARTS - 1:
                span = (span[0], float("inf"))  # whatever runs past the stated duration
            in_part = _seconds(rows, pieces, span)
            row[f"speech_s_third_{part + 1}"] = sum(in_part.values())
            row[f"dominant_emotion_third_{part + 1}"] = dominant(in_part, labels)
        role_rows.append(row)
        timeline_rows += timeline(rows, pieces, max_gap_s)
    return role_rows, timeline_rows
