"""The ``skem`` command line: a demo on bundled data, and fit/score on CSV files.

Every data set the demo uses ships with scikit-learn, so it needs no network.
"""

import argparse
import ast
import csv
import os
import sys
import warnings

from . import __version__

#: The models ``skem fit`` knows, by short name (imported when a command runs).
MODEL_NAMES = {
    "gmm": "EMGaussianMixture",
    "ppca": "ProbabilisticPCA",
    "mppca": "MixtureOfPPCA",
    "vae": "AmortizedVAE",
}


def model_class(name):
    """The estimator class for a short or full model name, or None."""
    import skem

    full_names = {full.lower(): full for full in MODEL_NAMES.values()}
    full = MODEL_NAMES.get(name.lower()) or full_names.get(name.lower())
    return None if full is None else getattr(skem, full)


def run_demo(args, out=None):
    """Fit every model on bundled data, print the report, optionally draw figures."""
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError('the figures need matplotlib: pip install "skem[plot]"') from None
    from . import demo

    def progress(name):
        print(f"running the {name.replace('_', ' ')} demo...", file=sys.stderr, flush=True)

    results = demo.run(progress=None if args.quiet else progress)
    print(demo.format_report(results), file=out)
    if args.plot:
        for path in demo.write_figures(results, args.plot):
            print(f"wrote {path}", file=out)
    return 0


class CommandError(Exception):
    """A user error reported as one line, without a traceback."""


#: Training rows scored for the anomaly threshold (a random subset beyond it).
THRESHOLD_ROWS = 20_000


def read_data(args, path):
    """The numbers and column names of a CSV file, with the command's options."""
    from ._csv import TableError, read_table

    try:
        return read_table(
            path, delimiter=args.delimiter, header=args.header, index_col=args.index_col
        )
    except TableError as error:
        raise CommandError(str(error)) from None


def _first_line(error):
    """The first line of a message (some libraries write paragraphs)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _report_warnings(command, caught):
    for warning in caught:
        print(f"skem {command}: warning: {_first_line(warning.message)}", file=sys.stderr)


def parse_params(pairs):
    """``key=value`` strings to keyword arguments; values are Python literals if they parse."""
    params = {}
    for pair in pairs or []:
        key, separator, text = pair.partition("=")
        if not separator or not key.strip():
            raise CommandError(f"--param expects key=value, got {pair!r}")
        try:
            params[key.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            params[key.strip()] = text.strip()
    return params


class TerminalProgress:
    """A scikit-learn fit callback printing iterations, bound and time to stderr.

    At most one line every ``interval`` seconds, rewritten in place.
    """

    def __init__(self, interval=0.5):
        self.interval = interval

    def setup(self, estimator, context):
        from time import perf_counter

        self._clock = perf_counter
        self._start = self._last = perf_counter()
        self._restart = 0

    def teardown(self, estimator, context):
        print(file=sys.stderr, flush=True)

    def on_fit_task_begin(self, estimator, context):
        if context.task_name == "restart":
            self._restart = context.task_id + 1

    def on_fit_task_end(self, estimator, context):
        now = self._clock()
        if context.task_name != "iteration" or now - self._last < self.interval:
            return False
        self._last = now
        monitor = estimator._monitor
        unit = "epoch" if hasattr(estimator, "validation_bounds_") else "iteration"
        print(
            f"\r  restart {self._restart}/{monitor.n_init}, {unit} "
            f"{len(monitor.lower_bounds)}: bound {monitor.lower_bound:.4f}, "
            f"{now - self._start:.1f} s   ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        return False


def run_fit(args, out=None):
    import joblib
    import numpy as np

    from ._monitor import plural

    estimator_class = model_class(args.model)
    if estimator_class is None:
        names = sorted([*MODEL_NAMES, *(name.lower() for name in MODEL_NAMES.values())])
        raise CommandError(f"unknown model {args.model!r}; choose one of {', '.join(names)}")
    params = parse_params(args.param)
    unknown = set(params) - set(estimator_class().get_params())
    if unknown:
        raise CommandError(
            f"{estimator_class.__name__} has no parameter {sorted(unknown)[0]!r}"
            f"; 'skem fit --help' lists them"
        )
    X, header = read_data(args, args.data)
    model = estimator_class(**params)
    if not args.quiet and sys.stderr.isatty() and hasattr(model, "set_callbacks"):
        model.set_callbacks(TerminalProgress())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X)
        except (ValueError, TypeError) as error:
            raise CommandError(
                f"cannot fit {estimator_class.__name__}: {_first_line(error)}"
            ) from None
        except MemoryError:
            raise CommandError(
                f"cannot fit {estimator_class.__name__}: not enough memory for these parameters"
            ) from None
        if hasattr(model, "set_callbacks"):
            model.set_callbacks()  # the saved model carries no terminal callback
        rows = np.arange(X.shape[0])
        if rows.size > THRESHOLD_ROWS:
            rows = np.sort(np.random.RandomState(0).choice(rows, THRESHOLD_ROWS, replace=False))
        training_scores = np.sort(model.score_samples(X[rows]))
    _report_warnings("fit", caught)
    if not np.all(np.isfinite(training_scores)):
        raise CommandError(
            f"{estimator_class.__name__} did not fit: the training rows score "
            f"{training_scores.min()} (training diverged); nothing was saved. Try "
            "standardising the data or other parameters."
        )
    joblib.dump({"model": model, "columns": header, "training_scores": training_scores}, args.out)
    status = "converged" if model.converged_ else "did not converge"
    sampled = "" if rows.size == X.shape[0] else f" (over {rows.size} sampled rows)"
    print(
        f"fitted {estimator_class.__name__} on {X.shape[0]} rows x {X.shape[1]} columns: "
        f"{plural(model.n_iter_, 'iteration')}, {status}, mean log-likelihood "
        f"{training_scores.mean():.4f}{sampled}; saved to {args.out}",
        file=out,
    )
    return 0


def match_columns(X, names, fitted_names, n_features, path):
    """``X``'s columns in the fitted order: by name when both files have a header
    row, by position when neither has one (then their number must match)."""
    if fitted_names is None or names is None:
        if X.shape[1] != n_features:
            raise CommandError(
                f"{path} has {X.shape[1]} columns but the model expects {n_features}"
            )
        if fitted_names is None and names is None:
            return X
        which = (
            "the model was fitted on a file without a header row"
            if fitted_names is None
            else f"{path} has no header row"
        )
        raise CommandError(
            f"{which}, so its columns cannot be matched by name; give both files a header "
            "row, or neither (--no-header)"
        )
    missing = [name for name in fitted_names if name not in names]
    unknown = [name for name in names if name not in fitted_names]
    if missing or unknown:
        parts = ([f"missing columns {missing}"] if missing else []) + (
            [f"unknown columns {unknown}"] if unknown else []
        )
        raise CommandError(f"{path}: {'; '.join(parts)} (the model's are {fitted_names})")
    if len(set(names)) != len(names):
        raise CommandError(f"{path}: repeated column names")
    return X[:, [names.index(name) for name in fitted_names]]


def run_score(args, out=None):
    import joblib
    import numpy as np

    try:
        bundle = joblib.load(args.model)
        model, training_scores = bundle["model"], bundle["training_scores"]
        fitted_names = bundle["columns"]
    except FileNotFoundError:
        raise CommandError(f"cannot read {args.model}: no such file") from None
    except Exception:  # any file that is not a model saved by ``skem fit``
        raise CommandError(f"{args.model} is not a model saved by 'skem fit'") from None
    X, names = read_data(args, args.data)
    X = match_columns(X, names, fitted_names, model.n_features_in_, args.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            scores = model.score_samples(X)
        except ValueError as error:
            raise CommandError(f"cannot score {args.data}: {_first_line(error)}") from None
    _report_warnings("score", caught)
    columns = [scores]
    header = ["log_density"]
    if args.contamination is not None:
        threshold = np.quantile(training_scores, args.contamination)
        columns.append((scores < threshold).astype(int))
        header.append("anomaly")
    destination = open(args.out, "w", newline="") if args.out else (out or sys.stdout)
    try:
        writer = csv.writer(destination)
        writer.writerow(header)
        for row in zip(*columns):
            writer.writerow([f"{row[0]:.10g}", *row[1:]])
    finally:
        if args.out:
            destination.close()
    return 0


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
        help="drop column N (0 is the first) of row labels (default: an "
        "unnamed first column, as pandas writes, is dropped)",
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
        f"thresholds (from at most {THRESHOLD_ROWS} rows). Reading CSV files needs pandas.",
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
        "by 'skem fit'. Columns are matched by name when both files have a header row, "
        "by position when neither has one.",
    )
    score.add_argument("model", help="a model saved by 'skem fit'")
    score.add_argument("data", help="CSV file with the model's columns")
    score.add_argument(
        "--contamination",
        type=_contamination,
        default=None,
        help="also flag rows less likely than this share of training rows",
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
    except CommandError as error:
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
