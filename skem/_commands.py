"""What the ``skem`` commands do, once ``skem.cli`` has parsed their arguments.

Each ``run_*`` function takes the parsed arguments and returns an exit status;
a user error is a ``CommandError`` (or the reader's ``TableError``), one line.
"""

import ast
import csv
import os
import shlex
import sys
import warnings

import numpy as np

from ._core._monitor import plural

#: The models ``skem fit`` knows, by short name (imported when a command runs).
MODEL_NAMES = {
    "gmm": "EMGaussianMixture",
    "ppca": "ProbabilisticPCA",
    "mppca": "MixtureOfPPCA",
    "vgm": "VariationalGaussianMixture",
    "fa": "FactorAnalysis",
    "mfa": "MixtureOfFactorAnalyzers",
    "bernoulli": "BernoulliMixture",
    "vae": "AmortizedVAE",
}

#: Training rows scored for the anomaly threshold (a random subset beyond it).
THRESHOLD_ROWS = 20_000


class CommandError(Exception):
    """A user error reported as one line, without a traceback."""


def model_class(name):
    """The estimator class for a short or full model name, or None."""
    import skem

    full_names = {full.lower(): full for full in MODEL_NAMES.values()}
    full = MODEL_NAMES.get(name.lower()) or full_names.get(name.lower())
    return None if full is None else getattr(skem, full)


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


def check_writable(path):
    """Refuse an output file that cannot be written, before any work is done."""
    existed = os.path.lexists(path)
    try:
        open(path, "ab").close()
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror}") from None
    if not existed:
        os.remove(path)


def read_data(args, path):
    """The ``Table`` of a CSV file, read with the command's options."""
    from ._csv import read_table

    return read_table(path, delimiter=args.delimiter, header=args.header, index_col=args.index_col)


def _first_line(error):
    """The first line of a message (some libraries write paragraphs)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _report(command, kind, messages):
    for message in messages:
        print(f"skem {command}: {kind}: {_first_line(message)}", file=sys.stderr)


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


def _new_model(args):
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
    return estimator_class(**params)


def _fit(model, X, quiet):
    """Fit; return the scores of (at most ``THRESHOLD_ROWS``) training rows and
    whether each is complete, with the warnings raised."""
    name = type(model).__name__
    if not quiet and sys.stderr.isatty() and hasattr(model, "set_callbacks"):
        model.set_callbacks(TerminalProgress())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X)
        except (ValueError, TypeError) as error:
            raise CommandError(f"cannot fit {name}: {_first_line(error)}") from None
        except MemoryError:
            raise CommandError(
                f"cannot fit {name}: not enough memory for these parameters"
            ) from None
        if hasattr(model, "set_callbacks"):
            model.set_callbacks()  # the saved model carries no terminal callback
        rows = np.arange(X.shape[0])
        if rows.size > THRESHOLD_ROWS:
            rows = np.sort(np.random.RandomState(0).choice(rows, THRESHOLD_ROWS, replace=False))
        scores = model.score_samples(X[rows])
    if not np.all(np.isfinite(scores)):
        raise CommandError(
            f"{name} did not fit: the training rows score {scores.min()} (training "
            "diverged); nothing was saved. Try standardising the data or other parameters."
        )
    return scores, ~np.isnan(X[rows]).any(axis=1), [warning.message for warning in caught]


#: Columns or rows a note names, at most (its ``--exclude`` lists every column).
LISTED = 4


def _shared_values(model, X):
    """The columns of X that a mixture component sits on: ``{column: (value,
    components)}`` where all the component's rows (two or more) hold one value."""
    labels = model.predict(X)
    shared = {}
    for component in np.unique(labels):
        rows = X[labels == component]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column without values
            low, high = np.nanmin(rows, axis=0), np.nanmax(rows, axis=0)
        constant = np.flatnonzero(low == high)
        if rows.shape[0] > 1 and constant.size < X.shape[1]:
            for column in constant:
                shared.setdefault(column, (low[column], []))[1].append(int(component))
    return shared


def discrete_columns_note(model, X, table, columns):
    """Why a mixture's components collapsed, when discrete columns hold them, or None.

    A component collapses onto one value of a column that takes few distinct
    values (a count, a category, a survey item): its rows all hold that value.
    ``columns`` are the positions in ``table`` of ``X``'s columns.
    """
    if not hasattr(model, "predict"):
        return None
    shared = _shared_values(model, X)
    distinct = {column: np.unique(X[:, column][~np.isnan(X[:, column])]) for column in shared}
    discrete = [column for column in shared if distinct[column].size <= max(10, X.shape[0] // 4)]
    if not discrete:
        return None
    components = sorted({component for column in discrete for component in shared[column][1]})
    listing = ", ".join(
        f"{table.describe(columns[column])} ({shared[column][0]:g}, held by "
        f"{np.sum(X[:, column] == shared[column][0])} of {X.shape[0]} rows; "
        f"{distinct[column].size} distinct values)"
        for column in discrete[:LISTED]
    ) + (f" and {len(discrete) - LISTED} more" if len(discrete) > LISTED else "")
    exclude = ",".join(table.option_value(columns[column]) for column in discrete)
    note = (
        f"component{'s' * (len(components) > 1)} {', '.join(map(str, components))} "
        f"{'sit' if len(components) > 1 else 'sits'} on a single value of {listing}: a "
        "Gaussian component collapses onto a value that many rows share, as in counts, "
        f"categories and survey items. Leave such columns out (--exclude {shlex.quote(exclude)})"
    )
    return note + _floor_advice(model, [distinct[column] for column in discrete]) + "."


def _floor_advice(model, distinct_values):
    """How to widen collapsed discrete columns with the model's variance floor."""
    floor = next(
        (name for name in ("reg_covar", "noise_variance_floor") if hasattr(model, name)), None
    )
    if floor is None:
        return ""
    steps = [np.diff(values).min() for values in distinct_values if values.size > 1]
    if steps and all(np.all(values == np.round(values)) for values in distinct_values):
        step = min(steps)
        return (
            f" or give them the spread of a whole-number step with {floor} "
            f"(--param {floor}={step**2 / 12:.2g}, step**2/12)"
        )
    return f" or raise {floor}"


def floored_columns_note(model, X, table, columns):
    """The file's columns whose variance is at most ``reg_covar``, by name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column without values
        variances = np.nanvar(X, axis=0)
    floored = np.flatnonzero((variances > 0) & (variances <= model.reg_covar))
    one = floored.size == 1
    listing = ", ".join(
        f"{table.describe(columns[column])} (variance {variances[column]:.3g})"
        for column in floored[:LISTED]
    ) + (f" and {floored.size - LISTED} more" if floored.size > LISTED else "")
    exclude = ",".join(table.option_value(columns[column]) for column in floored)
    return (
        f"in the file, {'that is' if one else 'those are'} {listing}: rescale "
        f"{'it' if one else 'them'} (other units) or leave {'it' if one else 'them'} out "
        f"(--exclude {shlex.quote(exclude)})"
    )


def run_fit(args, out=None):
    import joblib

    from .exceptions import DegenerateComponentWarning, VarianceFloorWarning

    model = _new_model(args)
    check_writable(args.out)
    table = read_data(args, args.data)
    columns = table.choose(args.columns, args.exclude)
    X = table.values(columns)
    empty = [columns[column] for column in np.flatnonzero(np.isnan(X).all(axis=0))]
    if empty:
        raise CommandError(
            f"{table.path}: {', '.join(map(table.describe, empty))} "
            f"{'has' if len(empty) == 1 else 'have'} no values; leave "
            f"{'it' if len(empty) == 1 else 'them'} out with --exclude "
            + shlex.quote(",".join(map(table.option_value, empty)))
        )
    observed = _observed_rows(table, X, "fit", "left out", "the chosen columns")
    X = X[observed]
    scores, complete, messages = _fit(model, X, args.quiet)
    _report("fit", "warning", messages)
    if any(isinstance(message, DegenerateComponentWarning) for message in messages):
        _report("fit", "note", filter(None, [discrete_columns_note(model, X, table, columns)]))
    floor_warned = any(isinstance(message, VarianceFloorWarning) for message in messages)
    if floor_warned and hasattr(model, "reg_covar"):  # (the mixtures' floor, by column)
        _report("fit", "note", [floored_columns_note(model, X, table, columns)])
    names = None if table.names is None else [table.names[column] for column in columns]
    joblib.dump(
        {"model": model, "columns": names, "training_scores": np.sort(scores[complete])},
        args.out,
    )
    status = "converged" if model.converged_ else "did not converge"
    sampled = "" if scores.size == X.shape[0] else f" (over {scores.size} sampled rows)"
    labels = "" if table.index_col is None else f" (row labels: {table.describe(table.index_col)})"
    print(
        f"fitted {type(model).__name__} on {X.shape[0]} rows x {X.shape[1]} columns{labels}: "
        f"{plural(model.n_iter_, 'iteration')}, {status}, mean log-likelihood "
        f"{scores.mean():.4f}{sampled}; saved to {args.out}",
        file=out,
    )
    return 0


def model_columns(table, args, fitted_names, n_features):
    """The numbers of the model's columns in ``table``: by name when both the model
    and the file have column names, by position (after ``--columns`` and
    ``--exclude``) when neither has."""
    guessed = args.header is None  # (the reader decided from the first row)
    if fitted_names is None and table.names is not None:
        hint = " (if that row is data, give --no-header)" if guessed else ""
        raise CommandError(
            f"the model was fitted on a file without a header row and {table.path} has "
            f"one{hint}, so its columns cannot be matched by position: score a file "
            "without it, or refit the model on a file with column names"
        )
    if table.names is None and fitted_names is not None:
        listed = ",".join(map(str, fitted_names[:LISTED]))
        more = f",... ({len(fitted_names)} names)" if len(fitted_names) > LISTED else ""
        hint = " (if its first row holds column names, give --header)" if guessed else ""
        raise CommandError(
            f"{table.path} has no header row{hint}, and the model's columns are matched "
            f"by name ({listed}{more}): score a file whose header row names them"
        )
    chosen = table.choose(args.columns, args.exclude)
    if fitted_names is None:
        if len(chosen) != n_features:
            raise CommandError(
                f"{table.path} has {len(chosen)} columns but the model expects {n_features} "
                "(choose them with --columns or --exclude, as for 'skem fit')"
            )
        return table.values(chosen)
    by_name = {table.names[column]: column for column in chosen}
    missing = [name for name in fitted_names if name not in by_name]
    if missing:
        others = [name for name in by_name if name not in fitted_names]
        raise CommandError(
            f"{table.path}: missing columns {missing}"
            + (f"; unknown columns {others}" if others else "")
            + f" (the model's are {fitted_names})"
        )
    return table.values([by_name[name] for name in fitted_names], suggest=False)


def _load_model(path):
    import joblib

    try:
        bundle = joblib.load(path)
        return bundle["model"], bundle["columns"], np.asarray(bundle["training_scores"])
    except FileNotFoundError:
        raise CommandError(f"cannot read {path}: no such file") from None
    except Exception:  # any file that is not a model saved by ``skem fit``
        raise CommandError(f"{path} is not a model saved by 'skem fit'") from None


def run_score(args, out=None):
    from ._anomaly import row_thresholds

    model, fitted_names, training_scores = _load_model(args.model)
    if args.out:
        check_writable(args.out)
    table = read_data(args, args.data)
    X = model_columns(table, args, fitted_names, model.n_features_in_)
    observed = _observed_rows(table, X, "score", "empty fields for", "the model's columns")
    scores, flags = np.full(X.shape[0], np.nan), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            scores[observed] = model.score_samples(X[observed])
        except ValueError as error:
            raise CommandError(f"cannot score {args.data}: {_first_line(error)}") from None
        if args.contamination is not None:
            flags = np.zeros(X.shape[0], dtype=int)
            thresholds = row_thresholds(model, X[observed], training_scores, args.contamination)
            flags[observed] = scores[observed] < thresholds
            notes = _calibration_notes(model, X[observed], training_scores, args.contamination)
    _report("score", "warning", [warning.message for warning in caught])
    if flags is not None:
        _report("score", "note", notes)
    destination = open(args.out, "w", newline="") if args.out else (out or sys.stdout)
    try:
        write_scores(destination, table.label_name, table.labels, scores, flags)
    finally:
        if args.out:
            destination.close()
    return 0


def _calibration_notes(model, X, training_scores, contamination):
    """A note when rows with missing cells are flagged against draws of a model
    that does not describe its training rows (a binomial test at 0.001)."""
    from scipy.stats import binomtest

    from ._anomaly import MIN_TRAINING_ROWS, training_share_below_draws

    if not np.isnan(X).any() or training_scores.size < MIN_TRAINING_ROWS:
        return []
    share = training_share_below_draws(model, training_scores, contamination)
    below = round(share * training_scores.size)
    if binomtest(below, training_scores.size, contamination).pvalue >= 1e-3:
        return []
    return [
        f"{share:.1%} of the training rows fall below the {contamination:g} quantile of "
        f"{type(model).__name__}'s own draws: the model describes them loosely, so rows "
        "with missing cells (flagged against its draws) and complete rows (against the "
        "training rows) are not flagged alike; a closer fit brings them together"
    ]


def write_scores(destination, label_name, labels, scores, flags):
    """CSV: the row labels (if any), the log-density, the anomaly flag (if any)."""
    writer = csv.writer(destination, lineterminator="\n")
    writer.writerow(
        ([label_name] if labels is not None else [])
        + ["log_density"]
        + (["anomaly"] if flags is not None else [])
    )
    for row, score in enumerate(scores):
        scored = not np.isnan(score)
        writer.writerow(
            ([labels[row]] if labels is not None else [])
            + [f"{score:.10g}" if scored else ""]
            + ([flags[row] if scored else ""] if flags is not None else [])
        )


def _observed_rows(table, X, command, outcome, columns):
    """Where rows hold a value; the others are reported in a note (``outcome``,
    by label or position). No row holding one is an error."""
    observed = ~np.isnan(X).all(axis=1)
    empty = np.flatnonzero(~observed)
    if empty.size == X.shape[0]:
        raise CommandError(f"{table.path}: no row has a value in {columns}")
    if empty.size:
        shown = empty[:LISTED]
        listing = (
            ", ".join(repr(label) for label in table.labels[shown])
            if table.labels is not None
            else f"data row{'s' * (empty.size > 1)} {', '.join(map(str, shown))}, counted from 0"
        ) + (f" and {empty.size - shown.size} more" if empty.size > shown.size else "")
        message = f"{outcome} {plural(empty.size, 'row')} without a value in {columns}"
        _report(command, "note", [f"{message} ({listing})"])
    return observed
