"""The ``ser`` command: one subcommand per stage, each implemented in its own module.

Subcommand modules expose ``add_arguments(parser)`` and ``main(args) -> int``; the two
Beam pipelines (``features``, ``label``) take their own argv so that Beam pipeline
options (``--runner``, ``--direct_num_workers``, ``--project`` ...) pass straight through.

Stage functions raise; only this module turns an expected error into one line
``ser COMMAND: error: ...`` on stderr and an exit code: 2 (:data:`EXIT_BAD_INPUT`) when a
stage refused its inputs before doing anything (:class:`~ser_core.errors.StageError`),
1 for the other expected errors (bad params, missing files, bad corpora). ``--verbose``
shows the traceback of a subcommand's error instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NoReturn, Sequence

from ser_core.errors import EXIT_BAD_INPUT, SerError, StageError

# name -> (module, add_arguments attribute or None, main attribute, help)
COMMANDS: dict[str, tuple[str, str | None, str, str]] = {
    "corpora": ("ser_core.manifest", None, "corpora_main", "list the corpus readers"),
    "manifest": ("ser_core.manifest", "add_arguments", "main",
                 "list corpora (no decoding) into one Parquet manifest"),
    "demo-corpus": ("ser_core.demo.corpus", "add_arguments", "main",
                    "generate the embedded demo corpus (RAVDESS layout)"),
    "demo-archive": ("ser_core.demo.archive", "add_arguments", "main",
                     "generate the demo call-centre archive with ground truth"),
    "mix-calls": ("ser_core.demo.calls", "add_arguments", "main",
                  "mix real labelled clips into stereo telephone calls with ground truth"),
    "features": ("pipelines.features", None, "run",
                 "Beam pipeline: manifest -> audio features -> Parquet shards"),
    "train": ("ser_core.training.train", "add_arguments", "main",
              "train ResLSTM-SA under a speaker-independent protocol (DVC stage)"),
    "transfer": ("ser_core.training.transfer", "add_arguments", "main",
                 "train on some corpora, score the corpora left out (corpus x corpus matrix)"),
    "tune": ("ser_core.training.tune", "add_arguments", "main",
             "choose a training recipe on validation speakers only (test speakers removed)"),
    "results": ("ser_core.training.results", "add_arguments", "main",
                "docs/RESULTS.md generated from training runs, tuning trials and cross-corpus scores"),
    "evaluate": ("ser_core.training.evaluate", "add_arguments", "main",
                 "pooled out-of-fold metrics, confusion matrix, plots (DVC stage)"),
    "label": ("pipelines.label", None, "run",
              "Beam pipeline: label audio archives with a trained checkpoint"),
    "export": ("ser_core.export", "add_arguments", "main",
               "export a checkpoint to ONNX (fp32 or int8) for onnxruntime"),
    "score": ("ser_core.inference.score", "add_arguments", "main",
              "score labelled segments against a ground-truth sidecar"),
    "report": ("ser_core.inference.report", "add_arguments", "main",
               "one self-contained HTML page summarising a ser label output"),
    "download": ("ser_core.download", "add_arguments", "main",
                 "download a corpus from its official source (ravdess)"),
}
PASSTHROUGH = ("features", "label")


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The ``ser`` parser; only the ``selected`` subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="ser", description="Speech emotion recognition batch pipelines.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, add_args, _main, help_text) in COMMANDS.items():
        if name in PASSTHROUGH:
            sub.add_parser(name, help=help_text + " (see: ser %s --help)" % name, add_help=False)
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        if add_args and name == selected:
            getattr(importlib.import_module(module), add_args)(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in PASSTHROUGH:
        module, _, func, _ = COMMANDS[argv[0]]
        try:
            result = getattr(importlib.import_module(module), func)(argv[1:])
        except SerError as exc:
            return report_error(argv[0], exc)
        return result if isinstance(result, int) else 0
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    if not args.command:
        parser.print_help()
        return 2
    module, _, func, _ = COMMANDS[args.command]
    try:
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except (SerError, ValueError, OSError, KeyError) as exc:
        # Expected user errors (bad params, missing files, bad corpora) end with one line,
        # not a traceback; --verbose shows the traceback.
        if args.verbose:
            raise
        return report_error(args.command, exc)


def report_error(command: str, exc: BaseException) -> int:
    """Print ``ser COMMAND: error: ...`` on one line; returns the exit code."""
    message = str(exc).replace("\n", " ")
    print(f"ser {command}: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT if isinstance(exc, StageError) else 1


def exit_without_teardown(code: int) -> NoReturn:
    """Flush and leave the process now, skipping CPython's interpreter teardown.

    Every command has written and closed all its outputs when its ``main`` returns; what is
    left is the teardown of native libraries, whose leftover threads can abort it
    ("terminate called without an active exception", SIGABRT) and turn a finished command
    into a failed one: gRPC services of a local Beam run; pyarrow's reader threads when a
    Parquet file is read from a Python file object (:func:`ser_core.storage.parquet_source`
    no longer does that locally). The console script calls this last, for every command.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def entry(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``ser`` console script (and ``python -m pipelines.*``, with the command first)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's --help and usage errors (it printed its message)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    exit_without_teardown(code)


if __name__ == "__main__":
    entry()
