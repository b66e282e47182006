"""The ``skem`` command line: a demo on bundled data, and fit/score on CSV files.

Every data set the demo uses ships with scikit-learn, so it needs no network.
"""

import argparse
import ast
import csv
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
            raise CommandError(
                'the figures need matplotlib: pip install "skem[plot]"'
            ) from None
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


def read_csv(path, n_features=None):
    """Numeric rows of a CSV file; an optional first row of column names.

    Empty fields are missing values (NaN). Raises CommandError naming the
    line and column of the first problem.
    """
    import numpy as np

    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            numbered = [(reader.line_num, row) for row in reader
                        if row and not (len(row) == 1 and not row[0].strip())]
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise CommandError(f"{path} is not a readable CSV file: {error}") from None
    if not numbered:
        raise CommandError(f"{path} has no rows")
    header = None
    first_row = numbered[0][1]
    if not any(field.strip() and _is_number(field) for field in first_row):
        header = [name.strip() for name in first_row]  # column names, no numbers
        numbered = numbered[1:]
    if not numbered:
        raise CommandError(f"{path} has a header but no data rows")
    width = len(header) if header else len(numbered[0][1])
    values = np.empty((len(numbered), width))
    for index, (line, row) in enumerate(numbered):
        if len(row) != width:
            raise CommandError(f"{path}, line {line}: {len(row)} fields, expected {width}")
        for column, field in enumerate(row):
            if not _is_number(field):
                raise CommandError(
                    f"{path}, line {line}, column {column + 1}: {field.strip()!r} is not a number"
                )
            values[index, column] = float(field) if field.strip() else np.nan
    if n_features is not None and width != n_features:
        raise CommandError(f"{path} has {width} columns but the model expects {n_features}")
    return values, header


def _first_line(error):
    """The first line of an exception's message (some libraries write paragraphs)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _is_number(field):
    if not field.strip():
        return True
    try:
        float(field)
    except ValueError:
        return False
    return True


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


def run_fit(args, out=None):
    import joblib
    import numpy as np

    estimator_class = model_class(args.model)
    if estimator_class is None:
        names = sorted([*MODEL_NAMES, *(name.lower() for name in MODEL_NAMES.values())])
        raise CommandError(f"unknown model {args.model!r}; choose one of {', '.join(names)}")
    params = parse_params(args.param)
    unknown = set(params) - set(estimator_class().get_params())
    if unknown:
        raise CommandError(f"{estimator_class.__name__} has no parameter {sorted(unknown)[0]!r}")
    X, header = read_csv(args.data)
    model = estimator_class(**params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X)
        except (ValueError, TypeError) as error:
            raise CommandError(f"cannot fit {estimator_class.__name__}: {_first_line(error)}") from None
        except MemoryError:
            raise CommandError(
                f"cannot fit {estimator_class.__name__}: not enough memory for these parameters"
            ) from None
    for warning in caught:
        print(f"skem fit: warning: {warning.message}", file=sys.stderr)
    training_scores = np.sort(model.score_samples(X))
    joblib.dump({"model": model, "columns": header, "training_scores": training_scores},
                args.out)
    status = "converged" if model.converged_ else "did not converge"
    print(f"fitted {estimator_class.__name__} on {X.shape[0]} rows x {X.shape[1]} columns: "
          f"{model.n_iter_} iterations, {status}, mean log-likelihood "
          f"{training_scores.mean():.4f}; saved to {args.out}", file=out)
    return 0


def run_score(args, out=None):
    import joblib
    import numpy as np

    try:
        bundle = joblib.load(args.model)
        model, training_scores = bundle["model"], bundle["training_scores"]
    except FileNotFoundError:
        raise CommandError(f"cannot read {args.model}: no such file") from None
    except Exception:  # any file that is not a model saved by ``skem fit``
        raise CommandError(f"{args.model} is not a model saved by 'skem fit'") from None
    X, _ = read_csv(args.data, n_features=model.n_features_in_)
    try:
        scores = model.score_samples(X)
    except ValueError as error:
        raise CommandError(f"cannot score {args.data}: {_first_line(error)}") from None
    columns = [scores]
    names = ["log_density"]
    if args.contamination is not None:
        threshold = np.quantile(training_scores, args.contamination)
        columns.append((scores < threshold).astype(int))
        names.append("anomaly")
    destination = open(args.out, "w", newline="") if args.out else (out or sys.stdout)
    try:
        writer = csv.writer(destination)
        writer.writerow(names)
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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="skem", description="Latent-variable models trained by EM, from the shell."
    )
    parser.add_argument("--version", action="version", version=f"skem {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="fit the models on bundled data and report")
    demo.add_argument("--plot", metavar="DIR",
                      help='also write the figures as PNG files in DIR (needs "skem[plot]")')
    demo.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    demo.set_defaults(run=run_demo)

    fit = commands.add_parser("fit", help="fit a model on a CSV file and save it")
    fit.add_argument("model", help=f"one of {', '.join(sorted(MODEL_NAMES))}")
    fit.add_argument("data", help="CSV file of numbers, optionally with a header row")
    fit.add_argument("--param", action="append", metavar="KEY=VALUE",
                     help="a model parameter, e.g. n_components=3 (repeatable)")
    fit.add_argument("--out", required=True, help="where to save the model (joblib)")
    fit.set_defaults(run=run_fit)

    score = commands.add_parser("score", help="write per-row log-densities of a CSV file")
    score.add_argument("model", help="a model saved by 'skem fit'")
    score.add_argument("data", help="CSV file with the model's columns")
    score.add_argument("--contamination", type=_contamination, default=None,
                       help="also flag rows less likely than this share of training rows")
    score.add_argument("--out", help="CSV file to write (default: standard output)")
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
    except OSError as error:  # e.g. an output path that cannot be written
        print(f"skem {args.command}: error: {error.strerror}: {error.filename}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
