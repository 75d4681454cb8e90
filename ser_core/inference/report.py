"""``ser report LABELS_DIR --output report.html``: one page a call-centre team can read.

Reads the ``segments-*``, ``files-*``, ``timeline-*`` (when present; older outputs have
none, and their turns are merged here from the segments) and ``errors-*`` shards of a
``ser label`` output folder (local) and writes ONE self-contained HTML file (plots are PNG
data URIs, no external assets, no scripts) with:

- an overview: files, labelled files, errors, hours of audio and of labelled speech;
- the emotion distribution per role across the archive, in seconds (plot and table);
- per-call timelines of the first ``--calls`` calls (by path): one lane per channel, the
  merged turns coloured by emotion;
- error counts by stage and reason (the error text without the file's path);
- a table of per-call summaries: per role, speech seconds, dominant emotion, the main
  shares and the dominant emotion per third of the call.

Every number comes from :mod:`ser_core.inference.summary` (seconds, not window counts).
Seconds of ``uncertain`` segments (``--min-confidence``) are shown as their own grey
category wherever there are any.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pyarrow as pa  # noqa: E402

from ser_core.inference import UNCERTAIN  # noqa: E402
from ser_core.inference.outputs import METADATA_KEY as LABEL_METADATA_KEY  # noqa: E402
from ser_core.inference.outputs import TIMELINE_PREFIX  # noqa: E402
from ser_core.inference.summary import DEFAULT_MAX_GAP_S, N_PARTS, summarise_file  # noqa: E402
from ser_core.metrics import PROB_PREFIX  # noqa: E402
from ser_core.storage import read_schema, read_shards, shard_paths  # noqa: E402

DPI = 100
FIG_WIDTH_IN = 10.0  # every plot is 1000 px wide
MAX_TABLE_CALLS = 1000
COLOURS = {"neutral": "#9e9e9e", "calm": "#80cbc4", "happy": "#fdd835", "sad": "#1e88e5",
           "angry": "#e53935", "fearful": "#8e24aa", "disgust": "#43a047", "surprised": "#fb8c00",
           UNCERTAIN: "#cfd8dc"}
EXTRA_COLOURS = ("#6d4c41", "#f06292", "#00acc1", "#c0ca33", "#5c6bc0", "#ffb300")
_MORE_ERRORS = re.compile(r" \(and \d+ more error\(s\)\)$")


@dataclass
class LabelsOutput:
    """A ``ser label`` output folder, read back and summarised."""

    root: Path
    labels: list[str]
    role_rows: list[dict[str, Any]] = field(default_factory=list)
    timelines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # first calls only
    errors: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    n_files: int = 0
    audio_s: float = 0.0


def _metadata(*tables: pa.Table | None) -> dict[str, Any]:
    for table in tables:
        raw = (table.schema.metadata or {}).get(LABEL_METADATA_KEY) if table is not None else None
        if raw:
            return json.loads(raw)
    return {}


def _labels(metadata: dict[str, Any], segments: pa.Table | None) -> list[str]:
    """The model's labels in its order (metadata, else the prob_* columns, else the emotions seen)."""
    if metadata.get("labels"):
        return list(metadata["labels"])
    if segments is None:
        return []
    probs = [c[len(PROB_PREFIX):] for c in segments.column_names if c.startswith(PROB_PREFIX)]
    return probs or sorted(set(segments.column("emotion").to_pylist()))


def _read(root: Path, prefix: str) -> pa.Table | None:
    """Every ``<prefix>`` shard as one table with the first shard's schema metadata, or None."""
    paths = shard_paths(root, prefix)
    if not paths:
        return None
    return read_shards(root, prefix).replace_schema_metadata(read_schema(paths[0]).metadata)


def read_labels(root: str | Path, n_calls: int = 10) -> LabelsOutput:
    """Read a label output folder and summarise every file; timelines of the first ``n_calls``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    segments, files, errors, stored_turns = (_read(root, p) for p in ("segments", "files", "errors",
                                                                        TIMELINE_PREFIX))
    if segments is None and files is None and errors is None:
        raise FileNotFoundError(f"no segments-, files- or errors-*.parquet shards in {root} "
                                f"(expected the --output folder of ser label)")
    metadata = _metadata(segments, files)
    out = LabelsOutput(root, _labels(metadata, segments), metadata=metadata)
    max_gap = float(metadata.get("segment_config", {}).get("hop_s", DEFAULT_MAX_GAP_S))
    info: dict[str, dict[str, Any]] = {}
    if files is not None:
        wanted = [c for c in ("path", "duration_s", "per_channel") if c in files.column_names]
        for row in files.select(wanted).to_pylist():
            info[row["path"]] = row
    by_path: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if segments is not None and segments.num_rows:
        cols = ["path", "channel", "role", "start_s", "end_s", "emotion", "confidence"]
        for row in segments.select(cols).to_pylist():
            by_path[row["path"]].append(row)
    turns_by_path: dict[str, list[dict[str, Any]]] | None = None
    if stored_turns is not None:  # the pipeline's own timeline (ser label writes it)
        turns_by_path = defaultdict(list)
        for turn in stored_turns.to_pylist():
            turns_by_path[turn["path"]].append(turn)
    paths = sorted(set(info) | set(by_path))
    out.n_files = len(paths)
    first = set(paths[:n_calls])
    for path in paths:
        meta = info.get(path, {})
        per_channel = meta.get("per_channel") or []
        channels = [(int(c["channel"]), c["role"]) for c in per_channel] or None
        detected = {int(c["channel"]): c["detected_s"] for c in per_channel if c.get("detected_s") is not None}
        roles, turns = summarise_file(path, by_path.get(path, []), out.labels, duration_s=meta.get("duration_s"),
                                      channels=channels, max_gap_s=max_gap, detected_s=detected or None)
        out.role_rows += roles
        out.audio_s += roles[0]["duration_s"] if roles else 0.0
        if path in first:
            stored = None if turns_by_path is None else turns_by_path.get(path, [])
            out.timelines[path] = turns if stored is None else sorted(
                stored, key=lambda t: (t["channel"], t["turn"]))
    if errors is not None:
        out.errors = errors.to_pylist()
    return out


def error_reason(error: str, path: str | None) -> str:
    """An error message without the file it names, so the same failure groups together."""
    text = _MORE_ERRORS.sub("", error or "")
    if path:
        text = text.replace(f": {path}", "").replace(path, "<file>")
    return text.strip() or "(no message)"


def error_counts(errors: Sequence[dict[str, Any]]) -> list[tuple[str, str, int, str]]:
    """(stage, reason, count, one example path), most frequent first."""
    counts: Counter = Counter()
    example: dict[tuple[str, str], str] = {}
    for e in errors:
        key = (str(e.get("stage") or ""), error_reason(e.get("error") or "", e.get("path")))
        counts[key] += 1
        example.setdefault(key, str(e.get("path") or ""))
    return [(stage, reason, n, example[(stage, reason)]) for (stage, reason), n in
            sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def role_seconds(role_rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Seconds per emotion per role, across the archive."""
    names = [*labels, UNCERTAIN]
    out: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(names, 0.0))
    for row in role_rows:
        for label in names:
            out[row["role"]][label] += row.get(f"share_{label}", 0.0) * row["speech_s"]
    return dict(out)


def shown_labels(labels: Sequence[str], seconds: dict[str, dict[str, float]]) -> list[str]:
    """The model's labels, then ``uncertain`` when any second is."""
    uncertain = any(by_label.get(UNCERTAIN, 0.0) > 0 for by_label in seconds.values())
    return [*labels, UNCERTAIN] if uncertain else list(labels)


# ---------------------------------------------------------------- plots


def colour(label: str, labels: Sequence[str]) -> str:
    if label in COLOURS:
        return COLOURS[label]
    extras = [lab for lab in labels if lab not in COLOURS]
    return EXTRA_COLOURS[(extras.index(label) if label in extras else 0) % len(EXTRA_COLOURS)]


def png_data_uri(fig: plt.Figure) -> str:
    """The figure as a base64 PNG data URI (and closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def distribution_plot(seconds: dict[str, dict[str, float]], labels: Sequence[str]) -> str:
    roles = sorted(seconds)
    fig, ax = plt.subplots(figsize=(FIG_WIDTH_IN, 1.2 + 0.6 * max(1, len(roles))))
    left = [0.0] * len(roles)
    for label in labels:
        minutes = [seconds[r][label] / 60 for r in roles]
        ax.barh(roles, minutes, left=left, color=colour(label, labels), label=label)
        left = [a + b for a, b in zip(left, minutes)]
    ax.set_xlim(0, max(max(left), 1e-3) * 1.05)
    ax.set_xlabel("minutes of labelled speech")
    ax.invert_yaxis()
    ax.legend(ncol=min(8, len(labels)) or 1, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.98, top=0.75, bottom=0.3)
    return png_data_uri(fig)


def timeline_plot(path: str, turns: Sequence[dict[str, Any]], lanes: Sequence[tuple[int, str]],
                  duration_s: float, labels: Sequence[str]) -> str:
    fig, ax = plt.subplots(figsize=(FIG_WIDTH_IN, 1.0 + 0.5 * max(1, len(lanes))))
    for y, (channel, _) in enumerate(lanes):
        mine = [t for t in turns if t["channel"] == channel]
        for label in labels:
            spans = [(t["start_s"], t["end_s"] - t["start_s"]) for t in mine if t["emotion"] == label]
            if spans:
                ax.broken_barh(spans, (y - 0.35, 0.7), color=colour(label, labels))
    ax.set_yticks(range(len(lanes)), [role for _, role in lanes])
    ax.set_ylim(max(len(lanes), 1) - 0.5, -0.5)
    ax.set_xlim(0, max(duration_s, 1e-3))
    ax.set_xlabel("seconds")
    ax.set_title(Path(path).name, fontsize=9, loc="left")
    seen = [lab for lab in labels if any(t["emotion"] == lab for t in turns)]
    for label in seen:
        ax.bar(0, 0, color=colour(label, labels), label=label)
    if seen:
        ax.legend(ncol=len(seen), loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.98, top=0.78, bottom=0.3)
    return png_data_uri(fig)


def errors_plot(counts: Sequence[tuple[str, str, int, str]], top: int = 15) -> str:
    shown = list(counts[:top])
    height = 0.8 + 0.35 * len(shown)  # inches: 0.55 for the axis below, 0.25 above
    fig, ax = plt.subplots(figsize=(FIG_WIDTH_IN, height))
    names = [f"{stage}: {reason[:70]}" for stage, reason, _, _ in shown]
    ax.barh(range(len(shown)), [n for _, _, n, _ in shown], color="#e53935")
    ax.set_yticks(range(len(shown)), names, fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("files")
    fig.subplots_adjust(left=0.5, right=0.98, top=1 - 0.25 / height, bottom=0.55 / height)
    return png_data_uri(fig)


# ---------------------------------------------------------------- HTML

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1040px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:left}td.n{text-align:right}
img{max-width:100%}figure{margin:1em 0}p.note{color:#666;font-size:.85em}"""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{html.escape(str(v))}</td>' if i in numeric else f"<td>{html.escape(str(v))}</td>"
        for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _top_shares(row: dict[str, Any], labels: Sequence[str], k: int = 3) -> str:
    ranked = sorted(((row[f"share_{lab}"], lab) for lab in labels if row[f"share_{lab}"] > 0), reverse=True)
    return ", ".join(f"{lab} {share:.0%}" for share, lab in ranked[:k])


def render_html(out: LabelsOutput) -> str:
    """The whole page for a read and summarised label output."""
    labels, rows = out.labels, out.role_rows
    speech_s = sum(r["speech_s"] for r in rows)
    counts = error_counts(out.errors)
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>Emotion labels: {html.escape(out.root.name)}</title><style>{STYLE}</style></head><body>",
             f"<h1>Emotion labels: {html.escape(str(out.root))}</h1>"]
    if out.metadata.get("model"):
        parts.append(f'<p class="note">model {html.escape(str(out.metadata["model"]))}; '
                     f'labels {html.escape(", ".join(labels))}</p>')
    parts.append('<section id="overview"><h2>Overview</h2>' + _table(
        ["files labelled", "files failed", "audio (h)", "labelled speech (h)"],
        [[out.n_files, len(out.errors), f"{out.audio_s / 3600:.2f}", f"{speech_s / 3600:.2f}"]], (0, 1, 2, 3))
        + "</section>")

    seconds = role_seconds(rows, labels)
    categories = shown_labels(labels, seconds)
    parts.append('<section id="distribution"><h2>Emotion distribution per role (seconds)</h2>')
    if seconds and labels:
        parts.append(_img(distribution_plot(seconds, categories), "emotion distribution per role"))
        totals = {role: max(sum(by_label.values()), 1e-9) for role, by_label in seconds.items()}
        table_rows = [[role] + [f"{seconds[role][lab]:.1f} ({seconds[role][lab] / totals[role]:.0%})"
                                for lab in categories] for role in sorted(seconds)]
        parts.append(_table(["role", *categories], table_rows, tuple(range(1, len(categories) + 1))))
    else:
        parts.append('<p class="note">no labelled speech</p>')
    parts.append("</section>")

    parts.append(f'<section id="timelines"><h2>Timelines of the first {len(out.timelines)} calls</h2>')
    by_path: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_path[r["path"]].append(r)
    for path, turns in out.timelines.items():
        lanes = [(r["channel"], r["role"]) for r in by_path[path]]
        duration = by_path[path][0]["duration_s"] if by_path[path] else 0.0
        uri = timeline_plot(path, turns, lanes, duration, [*labels, UNCERTAIN])
        parts.append(f"<figure>{_img(uri, 'timeline of ' + path)}<figcaption>{html.escape(path)}: "
                     f"{len(turns)} turns</figcaption></figure>")
    parts.append("</section>")

    parts.append('<section id="errors"><h2>Errors by stage and reason</h2>')
    if counts:
        parts.append(_img(errors_plot(counts), "error counts by stage and reason"))
        parts.append(_table(["stage", "reason", "files", "example"], [list(c) for c in counts], (2,)))
    else:
        parts.append('<p class="note">no errors</p>')
    parts.append("</section>")

    parts.append('<section id="calls"><h2>Per-call summaries</h2>')
    shown = sorted(by_path)[:MAX_TABLE_CALLS]
    if len(by_path) > len(shown):
        parts.append(f'<p class="note">the first {len(shown)} of {len(by_path)} calls</p>')
    header = ["call", "role", "duration (s)", "speech (s)", "segments", "dominant", "main emotions",
              *(f"third {i + 1}" for i in range(N_PARTS))]
    table_rows = [[Path(p).name, r["role"], f"{r['duration_s']:.1f}", f"{r['speech_s']:.1f}", r["n_segments"],
                   r["dominant_emotion"] or "-", _top_shares(r, categories),
                   *((r[f"dominant_emotion_third_{i + 1}"] or "-") for i in range(N_PARTS))]
                  for p in shown for r in by_path[p]]
    parts.append(_table(header, table_rows, (2, 3, 4)) + "</section></body></html>\n")
    return "\n".join(parts)


def write_report(labels_dir: str | Path, output: str | Path, n_calls: int = 10) -> LabelsOutput:
    """Read ``labels_dir`` and write the page to ``output``; returns what was read."""
    if n_calls < 0:
        raise ValueError(f"--calls must be >= 0, got {n_calls}")
    out = read_labels(labels_dir, n_calls)
    page = render_html(out)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(output)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("labels", metavar="LABELS_DIR", help="the --output folder of ser label")
    parser.add_argument("--output", required=True, help="HTML file to write")
    parser.add_argument("--calls", type=int, default=10, help="timelines for the first N calls (default 10)")


def main(args: argparse.Namespace) -> int:
    out = write_report(args.labels, args.output, args.calls)
    print(f"wrote {args.output}: {out.n_files} files, {len(out.errors)} errors, "
          f"{len(out.timelines)} timelines")
    return 0
