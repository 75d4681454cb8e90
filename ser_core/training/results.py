"""``ser results``: docs/RESULTS.md, generated from training runs and tuning trials.

Nothing in the page is typed by hand: every figure is recomputed here from what the
stages wrote, so the page can be rebuilt (and checked) from them at any time:

- ``--run NAME=TRAIN_DIR``: a ``ser train`` output (``predictions.csv`` + ``run.json``);
  several folders under one NAME (seeds trained at different times) share a row.
  Its pooled out-of-fold UAR per seed, mean +- std (ddof=1), max, accuracy, seed ensemble,
  trainable parameters (rebuilt from the run's config) and wall time per run.
- ``--trials TRIALS_JSON``: ``ser tune`` records; every trial with its validation UAR.
- ``--cross NAME=EVAL_DIR``: ``ser evaluate --model --features`` outputs (cross-corpus).
- ``--per-corpus NAME=TRAIN_DIR``: ``ser train`` outputs on one corpus or several; each
  corpus's pooled out-of-fold UAR (mean over seeds), as written and restricted to the
  corpus's classes: a model trained on several corpora beside models trained on each alone.
- ``--transfer NAME=TRANSFER_DIR``: ``ser transfer`` outputs, each matrix rebuilt from its
  runs' predictions (:func:`ser_core.training.transfer.build_matrix`) and tabulated: one
  recipe per NAME, its validation part beside its test part.

The paper's published figures (docs/PAPER.md) stand beside ours; ours never choose anything on
test folds (trials are scored on validation speakers with test speakers removed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ser_core.features import describe
from ser_core.model import ARCH_NAMES, ModelConfig, SERModel, count_parameters
from ser_core.training.config import TrainConfig
from ser_core.training.train import result_settings
from ser_core.splits import corpus_of
from ser_core.training.evaluate import (PAPER_UAR, Predictions, compute_metrics, per_corpus_seed_uars,
                                         read_predictions)


def _pairs(values: Sequence[str] | None, flag: str) -> list[tuple[str, Path]]:
    out = []
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} takes NAME=PATH, got {value!r}")
        out.append((name, Path(path)))
    return out


def _read_outputs(name: str, train_dir: Path) -> tuple[dict, Predictions]:
    """A ``ser train`` folder's run info and out-of-fold predictions."""
    info_path, predictions = train_dir / "run.json", train_dir / "predictions.csv"
    for path in (info_path, predictions):
        if not path.is_file():
            raise FileNotFoundError(f"{name}: {path} not found (a `ser train` output folder?)")
    return json.loads(info_path.read_text()), read_predictions(predictions)


def _read_run(name: str, train_dir: Path) -> tuple[dict, Predictions, float, int]:
    """One training folder: its run info, predictions, seconds per run and number of seeds."""
    info, predictions = _read_outputs(name, train_dir)
    n_seeds = max(1, len(info["config"]["seeds"]))
    timing_path = train_dir / "timing.json"
    if timing_path.is_file():  # the folds' own training times (restarts do not distort them)
        folds = json.loads(timing_path.read_text())["fold_seconds"]
        cv = [v for k, v in folds.items() if k != "final" and v is not None]
        per_run = sum(cv) / max(1, len({k.split("/")[0] for k in folds if k != "final"}))
    else:  # runs written before timing.json: the whole call, final model included
        per_run = info["seconds"] / n_seeds
    return info, predictions, per_run, n_seeds


def pool_predictions(parts: Sequence[Predictions], sources: Sequence[Path] = ()) -> Predictions:
    """Several runs' predictions (from ``sources``, named in errors) as one file; each seed
    comes from one run only, or it would count twice."""
    first = parts[0]
    names = [str(s) for s in sources] or [f"run {i}" for i in range(len(parts))]
    owner: dict[int, int] = {}
    for i, p in enumerate(parts):
        if p.labels != first.labels:
            raise ValueError(f"runs to pool have different label sets: {first.labels} vs {p.labels}")
        for seed in sorted(set(p.seeds.tolist())):
            if seed in owner:
                raise ValueError(f"seed {seed} given more than once ({names[owner[seed]]} and {names[i]}): the same "
                                 "seed would count twice; one recipe's runs pool distinct seeds")
            owner[seed] = i
    temps = [p.temperature for p in parts]
    return Predictions(
        labels=first.labels, utterance_ids=[u for p in parts for u in p.utterance_ids],
        **{k: np.concatenate([getattr(p, k) for p in parts]) for k in ("speakers", "seeds", "folds", "y", "pred", "probs")},
        temperature=None if any(t is None for t in temps) else np.concatenate(temps))


SINGLE_CORPUS_INERT = ("mixup_pairs", "balance_corpora")  # train_fold ignores both with one corpus


def _corpora(info: dict) -> set[str]:
    """The corpora a run's folds hold (run.json ``folds``; none recorded: empty)."""
    return {corpus_of(s) for f in info.get("folds", []) for part in ("train", "val", "test") for s in f[part]}


def one_recipe(name: str, dirs: Sequence[Path], infos: Sequence[dict]) -> dict:
    """The training settings the runs ``dirs`` (their run.json ``infos``) share; ValueError
    when they are not one recipe's seeds. A run written before an option existed was
    trained without it: the option's default."""
    cfg = {**TrainConfig().to_dict(), **infos[0]["config"]}
    same = result_settings(cfg)  # what makes two runs one recipe
    # settings that act only between corpora cannot tell single-corpus runs apart
    inert = SINGLE_CORPUS_INERT if all(len(_corpora(info)) == 1 for info in infos) else ()
    for d, info in zip(dirs[1:], infos[1:]):
        other = result_settings(info["config"])
        differ = sorted(k for k in set(same) | set(other) if same.get(k) != other.get(k) and k not in inert)
        if differ:
            raise ValueError(f"{name}: {d} was trained with other settings than {dirs[0]} ({differ}); "
                             "only runs of one recipe can share a row")
    return cfg


def group_by_name(pairs: Sequence[tuple[str, Path]]) -> dict[str, list[Path]]:
    """NAME=DIR pairs as one entry per name, in the order the names first appear."""
    grouped: dict[str, list[Path]] = {}
    for name, path in pairs:
        grouped.setdefault(name, []).append(path)
    return grouped


def run_row(name: str, train_dirs: Path | Sequence[Path]) -> dict:
    """One table row from one or more training runs of the same recipe (their seeds pooled:
    ``--run NAME=DIR`` repeated with the same NAME)."""
    dirs = [train_dirs] if isinstance(train_dirs, Path) else list(train_dirs)
    runs = [_read_run(name, d) for d in dirs]
    cfg = one_recipe(name, dirs, [r[0] for r in runs])
    per_run = sum(r[2] * r[3] for r in runs) / sum(r[3] for r in runs)
    metrics, seeds, _ = compute_metrics(pool_predictions([r[1] for r in runs], dirs))
    info = runs[0][0]
    n_dims = int(info["feature_config"].get("n_dims", 46))
    model = SERModel(ModelConfig(n_dims=n_dims, n_classes=len(cfg["labels"]), hidden=cfg["hidden"],
                                 arch=cfg["arch"], dropout=cfg["dropout"], mask_padding=cfg["mask_padding"]))
    return {"name": name, "arch": cfg["arch"], "hidden": cfg["hidden"], "seeds": [r["seed"] for r in seeds],
            "uars": [r["uar"] for r in seeds], "metrics": metrics, "params": count_parameters(model),
            "seconds_per_run": per_run, "config": cfg,
            "rows": info.get("n_utterances"), "front_end": describe(info["feature_config"])}


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def runs_table(rows: Sequence[dict]) -> list[str]:
    lines = ["| run | model | trainable params | seeds | pooled UAR mean ± std (ddof=1) | max | accuracy | "
             "seed ensemble UAR | ECE before / after temperature | wall time per run | paper (mean ± std ddof=0, max) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        paper = PAPER_UAR.get((r["arch"], r["hidden"]))
        lines.append(
            f"| {r['name']} | {ARCH_NAMES.get(r['arch'], r['arch'])}-h{r['hidden']} | {r['params']:,} | "
            f"{len(r['seeds'])} | {_f(m['uar_mean'])} ± {_f(m['uar_std'])} | {_f(m['uar_max'])} | {_f(m['wa'])} | "
            f"{_f(m.get('ensemble_uar'))} | {_f(m.get('ece'), 3)} / {_f(m.get('ece_calibrated'), 3)} | "
            f"{r['seconds_per_run'] / 60:.1f} min | "
            + (f"{paper[0]:.4f} ± {paper[1]:.4f}, {paper[2]:.4f}" if paper else "-") + " |")
    return lines


def recipe_of(cfg: dict) -> str:
    keys = ("mixup_alpha", "augment", "patience", "class_weights", "label_smoothing", "time_masks",
            "time_mask_frames", "freq_masks", "freq_mask_dims", "ema_decay", "dropout", "normalisation", "stats_clips",
            "balance_corpora", "crop_frames", "adapt_batchnorm", "domain_adversarial", "distil")
    parts = [f"{k}={cfg[k]}" + (f" from {Path(cfg['distil_from']).name}" if k == "distil" and cfg[k] else "")
             for k in keys if k in cfg]
    # the model and the optimiser, where they are not the defaults
    default = TrainConfig()
    parts += [f"{k}={cfg[k]}" for k in ("arch", "hidden", "lr", "weight_decay", "epochs", "mixup_pairs")
              if k in cfg and cfg[k] != getattr(default, k)]
    return ", ".join(parts)


def trials_table(paths: Sequence[Path]) -> list[str]:
    lines = ["| trial | front-end | changes from the paper's training | pooled validation UAR | per seed | "
             "mean best epoch | seconds |", "|---|---|---|---|---|---|---|"]
    trials = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"trials file not found: {path}")
        trials += list(json.loads(path.read_text()).values())
    for t in sorted(trials, key=lambda t: -t["val_uar"]):
        changes = json.dumps(t["overrides"], sort_keys=True) if t["overrides"] else "(base: the paper's training)"
        # the trial's front-end (records older than feature_config kept a description, or none)
        front = describe(t["feature_config"]) if t.get("feature_config") else t.get("front_end", "-")
        lines.append(f"| {t['name']} | {front} | `{changes}` | {t['val_uar']:.4f} | "
                     f"{' '.join(f'{v:.4f}' for v in t['val_uar_per_seed'])} | {t['mean_best_epoch']} | {t['seconds']} |")
    return lines


def cross_table(pairs: Sequence[tuple[str, Path]]) -> list[str]:
    lines = ["| scored | UAR over shared labels | accuracy | clips | shared labels | dropped (labels the model lacks) |",
             "|---|---|---|---|---|---|"]
    for name, folder in pairs:
        m = json.loads((folder / "metrics.json").read_text())
        cc = m.get("cross_corpus")
        if cc is None:
            raise ValueError(f"{folder}/metrics.json is not a cross-corpus evaluation (ser evaluate --model)")
        lines.append(f"| {name} | {m['uar']:.4f} | {m['wa']:.4f} | {m['n_test']} | {', '.join(cc['shared_labels'])} | "
                     f"{cc['n_dropped']} {json.dumps(cc['dropped'])} |")
    return lines


RUNS_HEADING = "## Runs: pooled out-of-fold UAR on the paper's five folds"
CROSS_HEADING = "## Cross-corpus"
PER_CORPUS_HEADING = "## Within each corpus: trained on several corpora, or on each alone"


def per_corpus_table(pairs: Sequence[tuple[str, Path]]) -> list[str]:
    """One row per recipe and corpus it was tested on (out of fold): the pooled UAR, mean over
    seeds (± their std, ddof=1, with several), as written and restricted to the corpus's
    classes. Folders given the same name are one recipe's seeds (checked), pooled in a row."""
    lines = ["| model | tested on | clips | seeds | split | front-end | UAR as written | restricted to its classes |",
             "|---|---|---|---|---|---|---|---|"]
    for name, dirs in group_by_name(pairs).items():
        outputs = [_read_outputs(name, d) for d in dirs]
        info = outputs[0][0]
        one_recipe(name, dirs, [o[0] for o in outputs])
        p = pool_predictions([o[1] for o in outputs], dirs)
        seeds = sorted(set(p.seeds.tolist()))
        corpora = np.array([corpus_of(s) for s in p.speakers])
        for corpus, m in per_corpus_seed_uars(p, corpora).items():
            lines.append(f"| {name} | {corpus} | {m['n_test']} | {len(seeds)} | {info['config']['split']} | "
                         f"{describe(info['feature_config'])} | {_mean_std(m['uar'])} | "
                         f"{_mean_std(m['uar_restricted'])} |")
    return lines


def _mean_std(values: Sequence[float]) -> str:
    return f"{np.mean(values):.4f}" + (f" ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else "")


def transfer_tables(pairs: Sequence[tuple[str, Path]]) -> list[str]:
    from ser_core.training.transfer import build_matrix, format_matrix

    out = []
    for name, folder in pairs:
        matrix, _ = build_matrix(folder)
        out += [f"### {name}", "", f"Front-end {describe(matrix['feature_config'])}; {recipe_of(matrix['config'])}; "
                f"labels {', '.join(matrix['labels'])}; validation part "
                f"{', '.join(s for v in matrix['validation_speakers'].values() for s in v)}.", "",
                format_matrix(matrix).rstrip("\n"), ""]
    return out


TRANSFER_HEADING = "## Between corpora: trained on some, tested on a corpus never heard (ser transfer)"
SPEAKERS_HEADING = "## Between corpora, per tested speaker"
SPREAD = "lowest / median / highest"  # the per-speaker table's summary rows, after the speakers


def speaker_scores(folder: Path) -> dict[tuple[str, str, str], float | None]:
    """(training corpora, tested speaker, part) -> the speaker's 4-core-class UAR, mean over
    the finished seeds of a ``ser transfer`` output (None where the speaker's clips carry fewer
    than two of those classes)."""
    from ser_core.training.transfer import build_matrix, corpus_classes, score_rows

    matrix, rows = build_matrix(folder)
    labels = matrix["labels"]
    validation = {s for speakers in matrix["validation_speakers"].values() for s in speakers}
    classes = corpus_classes(rows, labels, matrix.get("corpus_classes"))
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["trained_on"], r["speaker"], int(r["seed"])), []).append(r)
    per_seed: dict[tuple[str, str, str], list[float | None]] = {}
    for (trained, speaker, _), members in sorted(groups.items()):
        part = "val" if speaker in validation else "test"
        per_seed.setdefault((trained, speaker, part), []).append(score_rows(members, labels, classes)["core4"])
    return {key: None if None in values else float(np.mean(values)) for key, values in per_seed.items()}


def _speaker_rows(names: Sequence[str], cells: dict[tuple[str, ...], list[str]]) -> list[str]:
    """The per-speaker table: a column per recipe NAME, a row per (training corpora, tested
    speaker, part), the validation part first, each part's summary rows after the speakers."""
    keys = sorted(cells, key=lambda k: (k[1] == SPREAD, k[0], k[2] != "val", k[1]))
    return (["| trained on | tested speaker | part | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
            + ["| " + " | ".join([*key, *cells[key]]) + " |" for key in keys])


def speaker_table(pairs: Sequence[tuple[str, Path]]) -> list[str]:
    """One row per (training corpora, tested speaker), one column per recipe: the speaker's
    4-core-class UAR; then, per training set and part, the lowest, median and highest."""
    scores = {name: speaker_scores(folder) for name, folder in pairs}
    keys = {k for s in scores.values() for k in s}
    cells = {k: ["-" if (v := scores[name].get(k)) is None else f"{v:.3f}" for name, _ in pairs] for k in keys}
    for trained, part in {(k[0], k[2]) for k in keys}:
        spread = []
        for name, _ in pairs:
            values = [v for (t, _, p), v in scores[name].items() if t == trained and p == part and v is not None]
            spread.append(f"{min(values):.3f} / {np.median(values):.3f} / {max(values):.3f}" if values else "-")
        cells[(trained, SPREAD, part)] = spread
    return _speaker_rows([name for name, _ in pairs], cells)


def sections(runs: Sequence[tuple[str, Path]], trials: Sequence[Path], cross: Sequence[tuple[str, Path]],
             transfer: Sequence[tuple[str, Path]] = (),
             per_corpus: Sequence[tuple[str, Path]] = (),
             speakers: Sequence[tuple[str, Path]] = ()) -> list[list[str]]:
    """The page's ``## `` sections the given inputs make, each a list of lines (heading first)."""
    rows = [run_row(name, paths) for name, paths in group_by_name(runs).items()]
    out = []
    if rows:
        out.append([RUNS_HEADING, ""] + runs_table(rows) + [""]
                   + ["Recipes:", ""] + [f"- {r['name']}: front-end {r['front_end']}; {recipe_of(r['config'])}; "
                                         f"seeds {r['seeds']}, per-seed UAR {' '.join(f'{u:.4f}' for u in r['uars'])}"
                                         for r in rows] + [""])
    if trials:
        out.append(["## Every recipe tried, scored on validation speakers only", ""] + trials_table(trials) + [""])
    if cross:
        out.append([CROSS_HEADING, ""] + cross_table(cross) + [""])
    if per_corpus:
        out.append([PER_CORPUS_HEADING, "", "Out-of-fold clip UAR per corpus (speaker-independent folds within every "
                    "corpus), mean over seeds (± their std, ddof=1, with several; a name given to several runs pools "
                    "them as one recipe's seeds). A model that trained on several corpora chooses among all its labels "
                    "(as written) or among the tested corpus's own classes (restricted).", ""]
                   + per_corpus_table(per_corpus) + [""])
    if transfer:
        out.append([TRANSFER_HEADING, "",
                    "UAR with chance in brackets, mean ± std over seeds (and the seed ensemble: probabilities "
                    "averaged over seeds). The validation part of a tested corpus (its speakers that validate "
                    "when it trains) is where transfer recipes may be compared; the test part is scored once "
                    "per recipe.", ""] + transfer_tables(transfer))
    if speakers:
        out.append([SPEAKERS_HEADING, "", "Each tested speaker's UAR over the 4 core classes (neutral, happy, sad, "
                    "angry; chance 0.25), mean over seeds, for the recipes given (their sections above). A "
                    "part's figure above pools its speakers' clips; here is how far its speakers differ, and "
                    "whether the validation speakers rank recipes as the test speakers do.", ""]
                   + speaker_table(speakers) + [""])
    return out


def render(runs: Sequence[tuple[str, Path]], trials: Sequence[Path], cross: Sequence[tuple[str, Path]],
           preface: str = "", transfer: Sequence[tuple[str, Path]] = (),
           per_corpus: Sequence[tuple[str, Path]] = (),
           speakers: Sequence[tuple[str, Path]] = ()) -> str:
    out = ["# Results", "", "Generated by `ser results` from the training runs' predictions and the tuning "
           "records; do not edit by hand.", ""]
    if preface:
        out += [preface.strip(), ""]
    for section in sections(runs, trials, cross, transfer, per_corpus, speakers):
        out += section
    return "\n".join(out)


def _named_lines(lines: Sequence[str]) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
    """A section of one table whose rows start with a run's NAME, and maybe a list of
    ``- NAME: ...`` recipes: (its lines with every row and recipe line taken out, the rows by
    NAME, the recipe lines by NAME), each NAME in the order it first appears."""
    rest: list[str] = []
    rows: dict[str, list[str]] = {}
    recipes: dict[str, list[str]] = {}
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    body = set(table[2:])  # the header and its separator stay
    for i in sorted(body):
        rows.setdefault(lines[i].split(" | ")[0][2:], []).append(lines[i])
    for i, line in enumerate(lines):
        # a recipe line is "- NAME: ...", and a NAME may hold ": " itself: the longest NAME it starts with
        owner = max((name for name in rows if line.startswith(f"- {name}: ")), key=len, default=None)
        if owner is not None:
            recipes.setdefault(owner, []).append(line)
        elif i not in body:
            rest.append(line)
    return rest, rows, recipes


def _merge_rows(old: list[str], new: list[str]) -> list[str]:
    """``new`` (a runs, cross-corpus or per-corpus section) with ``old``'s rows and recipes
    of every NAME ``new`` does not give kept before its own; ``new`` whole when the two
    tables' columns differ."""
    old_rest, old_rows, old_recipes = _named_lines(old)
    new_rest, new_rows, new_recipes = _named_lines(new)
    if [line for line in old if line.startswith("|")][:1] != [line for line in new if line.startswith("|")][:1]:
        return list(new)
    rows = {**{k: v for k, v in old_rows.items() if k not in new_rows}, **new_rows}
    recipes = {**{k: v for k, v in old_recipes.items() if k not in new_rows}, **new_recipes}
    out: list[str] = []
    for line in new_rest:
        after_recipes = out[-1:] == ["Recipes:"]
        out.append(line)
        if line.startswith("|---"):
            out += [row for group in rows.values() for row in group]
        if after_recipes:
            out += [r for group in recipes.values() for r in group]
    return out


ROW_MERGED = (RUNS_HEADING, CROSS_HEADING, PER_CORPUS_HEADING)  # one row (or group) per NAME


def _columns(lines: Sequence[str]) -> tuple[list[str], list[str], list[str], dict[tuple[str, ...], list[str]]]:
    """A per-speaker section: (its lines before the table, after it, the recipe NAMEs of its
    columns, its cells by row: training corpora, tested speaker, part)."""
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    if not table:
        return list(lines), [], [], {}
    rows = [[c.strip() for c in lines[i].strip().strip("|").split(" | ")] for i in table]
    cells = {tuple(r[:3]): r[3:] for r in rows[2:]}
    return list(lines[:table[0]]), list(lines[table[-1] + 1:]), rows[0][3:], cells


def _merge_columns(old: list[str], new: list[str]) -> list[str]:
    """``new`` (a per-speaker section) with ``old``'s columns of every NAME ``new`` does not
    give kept: one column per recipe, whichever run folders made it, each cell as it was
    generated (a NAME given again replaces its column in place, as does a column with
    another NAME but the same cells, which the same runs made; new NAMEs come last; a row
    one table lacks reads "-" there)."""
    _, _, old_names, old_cells = _columns(old)
    before, after, new_names, new_cells = _columns(new)
    keys = sorted({*old_cells, *new_cells})

    def column(cells: dict[tuple[str, ...], list[str]], i: int) -> list[str]:
        return [cells[key][i] if key in cells else "-" for key in keys]

    given = [column(new_cells, i) for i in range(len(new_names))]
    # a column identical cell for cell to one given came from the same runs: renamed, not kept twice
    renamed = {n: new_names[given.index(c)] for i, n in enumerate(old_names)
               if n not in new_names and (c := column(old_cells, i)) in given}
    names = list(dict.fromkeys([renamed.get(n, n) for n in old_names] + new_names))

    def row(key: tuple[str, ...]) -> list[str]:
        cells = {**dict(zip(old_names, old_cells.get(key, ["-"] * len(old_names)))),
                 **dict(zip(new_names, new_cells.get(key, ["-"] * len(new_names))))}
        return [cells[n] for n in names]

    return before + _speaker_rows(names, {key: row(key) for key in keys}) + after


def _merge(old: Sequence[list[str]], new: Sequence[list[str]], prefix: str) -> list[list[str]]:
    """Sections (each a list of lines, heading first) of ``old`` with each of ``new``
    replacing the one of the same heading, or appended; within a section that has
    ``### `` subsections (the transfer matrices, one per recipe), only the subsections given
    are replaced or added, the others kept; in the runs, cross-corpus and per-corpus tables,
    only the rows (and recipes) of the NAMEs given; in the per-speaker table, only their
    columns."""
    by_heading = {section[0]: list(section) for section in old}
    order = [section[0] for section in old]
    for section in new:
        heading = section[0]
        if heading not in by_heading:
            order.append(heading)
            by_heading[heading] = list(section)
            continue
        sub = prefix + "#"
        if any(line.startswith(sub + " ") for line in section):
            intro, old_subs = _split(by_heading[heading], sub)
            new_intro, new_subs = _split(section, sub)
            by_heading[heading] = new_intro + [line for s in _merge(old_subs, new_subs, sub) for line in s]
        elif heading in ROW_MERGED:
            by_heading[heading] = _merge_rows(by_heading[heading], list(section))
        elif heading == SPEAKERS_HEADING:
            by_heading[heading] = _merge_columns(by_heading[heading], list(section))
        else:
            by_heading[heading] = list(section)
    out = []
    for heading in order:
        body = list(by_heading[heading])
        while body and body[-1] == "":
            body.pop()
        out.append(body + [""])
    return out


def _split(lines: Sequence[str], prefix: str) -> tuple[list[str], list[list[str]]]:
    """(the lines before the first ``prefix`` heading, the sections from each such heading)."""
    starts = [i for i, line in enumerate(lines) if line.startswith(prefix + " ")] + [len(lines)]
    return list(lines[:starts[0]]), [list(lines[a:b]) for a, b in zip(starts, starts[1:])]


def update(page: str, new_sections: Sequence[list[str]]) -> str:
    """``page`` (a page ``ser results`` wrote) with each of ``new_sections`` replacing the
    section of the same heading, or appended (and, in the transfer section, each recipe's
    subsection given replacing its namesake or appended, the others kept): results made at
    different times, from runs kept in different places, share one page, each section
    still generated."""
    head, old = _split(page.rstrip("\n").split("\n"), "##")
    return "\n".join(head + [line for section in _merge(old, new_sections, "##") for line in section])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", action="append", help="NAME=TRAIN_DIR (a ser train output); repeat; "
                        "runs given the same NAME are one recipe's seeds, pooled in one row")
    parser.add_argument("--trials", action="append", type=Path, help="a ser tune trials.json; repeat")
    parser.add_argument("--cross", action="append", help="NAME=EVAL_DIR (ser evaluate --model ...); repeat")
    parser.add_argument("--transfer", action="append", help="NAME=TRANSFER_DIR (ser transfer); repeat")
    parser.add_argument("--per-corpus", action="append", help="NAME=TRAIN_DIR (ser train on one corpus or "
                        "several): each corpus's out-of-fold UAR; repeat; runs given the same NAME are one recipe's "
                        "seeds, pooled in one row (mean ± std over seeds)")
    parser.add_argument("--transfer-speakers", action="append", help="NAME=TRANSFER_DIR (ser transfer): "
                        "each tested speaker's UAR (4 core classes), a column per recipe; repeat; with --update the "
                        "page's columns of other NAMEs are kept (one identical cell for cell to a column given is "
                        "taken to be the same runs under another name and replaced)")
    parser.add_argument("--preface", type=Path, help="a markdown file placed under the title")
    parser.add_argument("--output", required=True, type=Path, help="the page to write, e.g. docs/RESULTS.md")
    parser.add_argument("--update", action="store_true",
                        help="keep the page's other sections; replace (or add) only those these inputs make")


def main(args: argparse.Namespace) -> int:
    preface = args.preface.read_text() if args.preface else ""
    inputs = (_pairs(args.run, "--run"), args.trials or [], _pairs(args.cross, "--cross"))
    more = (_pairs(args.transfer, "--transfer"), _pairs(args.per_corpus, "--per-corpus"),
            _pairs(args.transfer_speakers, "--transfer-speakers"))
    if args.update:
        if preface or not args.output.is_file():
            raise ValueError("--update changes sections of an existing page (and takes no --preface)")
        text = update(args.output.read_text(), sections(*inputs, *more))
    else:
        text = render(*inputs, preface, *more)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0
