"""The ``skem`` command line: a demo on bundled data, and fit/score on CSV files.

This module parses the arguments and dispatches to ``skem._commands``. Every
data set the demo uses ships with scikit-learn, so it needs no network.
"""

import argparse
import os
import sys

from . import __version__
from ._commands import (
    MODEL_NAMES,
    THRESHOLD_ROWS,
    CommandError,
    run_demo,
    run_fit,
    run_score,
)
from ._csv import TableError


def _contamination(text):
    value = float(text)
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must be in (0, 0.5), got {text}")
    return value


class CommandParser(argparse.ArgumentParser):
    """A command's parser; ``more_help``, if set, adds text computed on demand."""

    more_help = None

    def format_help(self):
        text = super().format_help()
        return text if self.more_help is None else text + self.more_help()


def model_parameters_help():
    """Every model's parameters with their defaults (imports the models)."""
    import skem

    lines = ["\nmodel parameters (--param NAME=VALUE), with defaults:"]
    for short, full in MODEL_NAMES.items():
        params = getattr(skem, full)().get_params()
        listing = ", ".join(f"{name}={value!r}" for name, value in params.items())
        lines.append(f"  {short} ({full}): {listing}")
    return "\n".join(lines) + "\n"


def _add_table_options(parser):
    parser.add_argument(
        "--delimiter", help="field separator (default: sniffed; with ';' a decimal comma is read)"
    )
    header = parser.add_mutually_exclusive_group()
    header.add_argument(
        "--header",
        dest="header",
        action="store_const",
        const=True,
        help="the first row holds column names (default: decided from it)",
    )
    header.add_argument(
        "--no-header",
        dest="header",
        action="store_const",
        const=False,
        help="the first row is data",
    )
    parser.add_argument(
        "--index-col",
        type=int,
        metavar="N",
        help="column N (0 is the first) holds row labels, kept as text (default: an unnamed "
        "first column, as pandas writes, or a first column of distinct words or dates)",
    )
    parser.add_argument(
        "--columns",
        metavar="LIST",
        help="the data columns, comma-separated names or positions counted as --index-col "
        "counts (default: every column but the row labels)",
    )
    parser.add_argument(
        "--exclude", metavar="LIST", help="columns to leave out, as --columns names them"
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="skem", description="Latent-variable models trained by EM, from the shell."
    )
    parser.add_argument("--version", action="version", version=f"skem {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    demo = commands.add_parser("demo", help="fit the models on bundled data and report")
    demo.add_argument(
        "--plot",
        metavar="DIR",
        help='also write the figures as PNG files in DIR (needs "skem[plot]")',
    )
    demo.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    demo.set_defaults(run=run_demo)

    fit = commands.add_parser(
        "fit",
        help="fit a model on a CSV file and save it",
        description="Fit a model on a CSV file (plain or .gz, with or without a header row) "
        "and save it with the column names and the training scores that set anomaly "
        f"thresholds (of at most {THRESHOLD_ROWS} complete rows). Reading CSV files needs pandas.",
    )
    fit.add_argument("model", help=f"one of {', '.join(sorted(MODEL_NAMES))}")
    fit.add_argument("data", help="CSV file of numbers, optionally with a header row")
    fit.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="a model parameter, e.g. n_components=3 (repeatable; listed below)",
    )
    fit.add_argument("--out", required=True, help="where to save the model (joblib)")
    fit.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on stderr (also off when stderr is not a terminal)",
    )
    _add_table_options(fit)
    fit.more_help = model_parameters_help
    fit.set_defaults(run=run_fit)

    score = commands.add_parser(
        "score",
        help="write per-row log-densities of a CSV file",
        description="Write the log-density of every row of a CSV file under a model saved "
        "by 'skem fit', after the file's row labels when it has them. Columns are matched "
        "by name when both files have a header row (other columns are left out), by "
        "position when neither has one.",
    )
    score.add_argument("model", help="a model saved by 'skem fit'")
    score.add_argument("data", help="CSV file with the model's columns")
    score.add_argument(
        "--contamination",
        type=_contamination,
        default=None,
        metavar="C",
        help="also flag rows (anomaly=1) in the least likely share C: complete rows against "
        "the training rows' scores, rows with missing cells against the model's own draws "
        "with the same cells missing",
    )
    score.add_argument("--out", help="CSV file to write (default: standard output)")
    _add_table_options(score)
    score.set_defaults(run=run_score)
    return parser


def main(argv=None):
    """Entry point of the ``skem`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, TableError) as error:
        print(f"skem {args.command}: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (``skem score ... | head``): stop quietly, and
        # keep Python from complaining when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as error:  # e.g. an output path that cannot be written
        print(f"skem {args.command}: error: {error.strerror}: {error.filename}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
