"""The ``skem`` command line: a demo on bundled data, and fit/score on CSV files.

Every data set the demo uses ships with scikit-learn, so it needs no network.
"""

import argparse
import ast
import csv
import sys
import warnings
from pathlib import Path

import joblib

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import AmortizedVAE, EMGaussianMixture, MixtureOfPPCA, ProbabilisticPCA, __version__
from .datasets import make_low_rank_mixture


def _print_bounds(lower_bounds, out):
    print("  iteration   lower bound (mean log-likelihood, nats)", file=out)
    for iteration, bound in enumerate(lower_bounds, start=1):
        print(f"  {iteration:9d}   {bound: .6f}", file=out)


def demo_gaussian_mixture(out=None):
    """Fit EMGaussianMixture on the wine data and report bound, scores and BIC."""
    data = load_wine()
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    print(
        f"EMGaussianMixture on wine ({X_train.shape[0]} training and {X_test.shape[0]} "
        f"held-out rows, {X_train.shape[1]} standardised features)",
        file=out,
    )
    params = dict(n_components=3, covariance_type="diag", tol=1e-6, random_state=0)
    model = EMGaussianMixture(**params).fit(X_train)
    print("3 components, diagonal covariances:", file=out)
    _print_bounds(model.lower_bounds_, out)
    status = "converged" if model.converged_ else "stopped at max_iter"
    print(f"  {status} after {model.n_iter_} iterations", file=out)
    reference = GaussianMixture(**params).fit(X_train)
    print(
        f"  held-out mean log-likelihood: {model.score(X_test):.4f} nats "
        f"(scikit-learn's GaussianMixture, same start: {reference.score(X_test):.4f})",
        file=out,
    )
    agreement = adjusted_rand_score(y_test, model.predict(X_test))
    print(f"  adjusted Rand index of held-out clusters vs cultivar: {agreement:.3f}", file=out)
    bics = {}
    for n_components in range(1, 6):
        candidate = EMGaussianMixture(n_components, covariance_type="diag", random_state=0)
        bics[n_components] = candidate.fit(X_train).bic(X_train)
    listing = ", ".join(f"{k}: {v:.0f}" for k, v in bics.items())
    print(f"  BIC by number of components: {listing} -> best {min(bics, key=bics.get)}",
          file=out)
    return {"gaussian_mixture": model, "wine": (X_train, y_train), "params": params}


def demo_probabilistic_pca(out=None):
    """Fit ProbabilisticPCA on dequantised digits, with and without missing values."""
    rng = np.random.RandomState(0)
    pixels = load_digits().data
    # Integer pixels have no density; uniform noise in [0, 1) makes them continuous.
    X_train, X_test = train_test_split(pixels + rng.uniform(size=pixels.shape), random_state=0)
    print(
        f"\nProbabilisticPCA on digits ({X_train.shape[0]} training and {X_test.shape[0]} "
        f"held-out images, {X_train.shape[1]} pixels, dequantised)",
        file=out,
    )
    print("  q    held-out mean log-likelihood   noise variance", file=out)
    scores = {}
    for n_components in (2, 10, 20, 40, 63):
        model = ProbabilisticPCA(n_components).fit(X_train)
        scores[n_components] = model.score(X_test)
        print(f"  {n_components:<4d} {scores[n_components]:>28.3f} "
              f"{model.noise_variance_:>16.4g}", file=out)
    print(f"  best held-out q: {max(scores, key=scores.get)}", file=out)
    missing = X_train.copy()
    missing[rng.rand(*missing.shape) < 0.2] = np.nan
    model = ProbabilisticPCA(20, solver="em", random_state=0).fit(missing)
    print("  EM with 20% of the training pixels missing, q=20:", file=out)
    _print_bounds(model.lower_bounds_[:10], out)
    if model.n_iter_ > 10:
        print(f"  ... {model.n_iter_} iterations in all, last bound "
              f"{model.lower_bound_:.6f}", file=out)
    print(f"  held-out mean log-likelihood: {model.score(X_test):.3f} "
          f"(complete data: {scores[20]:.3f})", file=out)
    return {"ppca_missing": model}


def demo_mixture_of_ppca(out=None):
    """Mixture of PPCA against full-covariance Gaussians where the rows are few."""
    n_features, n_latent, n_components = 100, 3, 4
    X, labels = make_low_rank_mixture(120, n_features, n_components, n_latent, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, labels, test_size=0.5, random_state=0)
    print(
        f"\nMixtureOfPPCA on {n_components} low-rank Gaussians in {n_features} dimensions "
        f"({X_train.shape[0]} training rows, {X_test.shape[0]} held out)",
        file=out,
    )
    mixture = MixtureOfPPCA(n_components, n_latent, random_state=0).fit(X_train)
    _print_bounds(mixture.lower_bounds_, out)
    full = EMGaussianMixture(n_components, random_state=0).fit(X_train)
    agreement = adjusted_rand_score(y_test, mixture.predict(X_test))
    print(f"  held-out mean log-likelihood: {mixture.score(X_test):.2f} nats with "
          f"{mixture._n_parameters()} parameters; EMGaussianMixture(full): "
          f"{full.score(X_test):.4g} nats with {full._n_parameters()}", file=out)
    print(f"  adjusted Rand index of held-out clusters: {agreement:.3f}", file=out)
    return {"mixture_of_ppca": mixture, "low_rank": (X_test, y_test)}


def demo_vae(out=None):
    """Train AmortizedVAE on dequantised digits: ELBO per epoch, held-out scores."""
    rng = np.random.RandomState(1)
    digits = load_digits()
    X_train, X_test, _, y_test = train_test_split(
        digits.data + rng.uniform(size=digits.data.shape), digits.target, random_state=0
    )
    print(
        f"\nAmortizedVAE on digits ({X_train.shape[0]} training and {X_test.shape[0]} "
        "held-out images, dequantised), 10 latent dimensions, default settings",
        file=out,
    )
    print("  training (a few seconds)...", file=out or sys.stdout, flush=True)
    vae = AmortizedVAE(10, random_state=0).fit(X_train)
    print("  epoch   training ELBO   validation ELBO (nats per image)", file=out)
    for epoch in range(0, vae.n_iter_, 25):
        print(f"  {epoch + 1:5d}   {vae.lower_bounds_[epoch]:13.3f}   "
              f"{vae.validation_bounds_[epoch]:15.3f}", file=out)
    print(f"  stopped after {vae.n_iter_} epochs, keeping the best validation epoch", file=out)
    terms = vae.elbo_samples(X_test)
    mixture = EMGaussianMixture(50, covariance_type="diag", random_state=0).fit(X_train)
    print(
        f"  held-out ELBO {terms['elbo'].mean():.2f} = reconstruction "
        f"{terms['reconstruction'].mean():.2f} - KL {terms['kl'].mean():.2f}; "
        f"importance-weighted log-likelihood {vae.score(X_test):.2f}",
        file=out,
    )
    print(f"  EMGaussianMixture(50, 'diag'): {mixture.score(X_test):.2f}; "
          f"ProbabilisticPCA(40): {ProbabilisticPCA(40).fit(X_train).score(X_test):.2f}",
          file=out)
    return {"vae": vae, "digits": (X_test, y_test)}


def demo_anomaly_detection(out=None):
    """score_samples as an anomaly score: benign tumours in, malignant ones flagged."""
    data = load_breast_cancer()
    benign, malignant = data.data[data.target == 1], data.data[data.target == 0]
    train, test_benign = train_test_split(benign, random_state=0)
    test = np.vstack([test_benign, malignant])
    is_anomaly = np.r_[np.zeros(len(test_benign)), np.ones(len(malignant))]
    print(
        f"\nAnomaly detection on breast cancer: trained on {len(train)} benign tumours, "
        f"scoring {len(test_benign)} held-out benign and {len(malignant)} malignant ones",
        file=out,
    )
    detectors = {
        "EMGaussianMixture(2)": EMGaussianMixture(2, random_state=0),
        "ProbabilisticPCA(5)": ProbabilisticPCA(5),
        "AmortizedVAE(4)": AmortizedVAE(4, random_state=0),
    }
    for name, detector in detectors.items():
        scores = make_pipeline(StandardScaler(), detector).fit(train).score_samples(test)
        print(f"  {name:<22} ROC AUC {roc_auc_score(is_anomaly, -scores):.3f}", file=out)
    return {}


def run_demo(args, out=None):
    print(f"skem {__version__} demo: EM models on data bundled with scikit-learn", file=out)
    fitted = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        for section in (demo_gaussian_mixture, demo_probabilistic_pca, demo_mixture_of_ppca,
                        demo_vae, demo_anomaly_detection):
            fitted.update(section(out))
    if args.plot:
        for path in write_demo_figures(fitted, args.plot):
            print(f"wrote {path}", file=out)
    return 0


def write_demo_figures(fitted, directory):
    """The demo's figures as PNG files in ``directory``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotting

    Path(directory).mkdir(parents=True, exist_ok=True)
    X_wine, y_wine = fitted["wine"]
    X_low_rank, y_low_rank = fitted["low_rank"]
    X_digits, y_digits = fitted["digits"]
    figures = {
        "gaussian_mixture_bound.png": lambda ax: plotting.plot_lower_bounds(
            fitted["gaussian_mixture"], ax=ax),
        "gaussian_mixture_hill_climbing.png": lambda ax: plotting.plot_hill_climbing(
            EMGaussianMixture(**fitted["params"]), X_wine, ax=ax),
        "gaussian_mixture_ellipses.png": lambda ax: plotting.plot_mixture_ellipses(
            fitted["gaussian_mixture"], X_wine, dimensions=(0, 6), ax=ax),
        "ppca_missing_values_bound.png": lambda ax: plotting.plot_lower_bounds(
            fitted["ppca_missing"], ax=ax),
        "mixture_of_ppca_latent_space.png": lambda ax: plotting.plot_latent_space(
            fitted["mixture_of_ppca"], X_low_rank, y_low_rank, ax=ax),
        "vae_bounds.png": lambda ax: plotting.plot_lower_bounds(fitted["vae"], ax=ax),
        "vae_latent_space.png": lambda ax: plotting.plot_latent_space(
            fitted["vae"], X_digits, y_digits, ax=ax),
    }
    paths = []
    for name, draw in figures.items():
        figure, ax = plt.subplots(figsize=(6, 4.5))
        draw(ax)
        figure.tight_layout()
        figure.savefig(Path(directory) / name, dpi=100)
        plt.close(figure)
        paths.append(Path(directory) / name)
    return paths


MODELS = {
    "gmm": EMGaussianMixture,
    "ppca": ProbabilisticPCA,
    "mppca": MixtureOfPPCA,
    "vae": AmortizedVAE,
}
MODELS.update({cls.__name__.lower(): cls for cls in list(MODELS.values())})


class CommandError(Exception):
    """A user error reported as one line, without a traceback."""


def read_csv(path, n_features=None):
    """Numeric rows of a CSV file; an optional first row of column names.

    Empty fields are missing values (NaN). Raises CommandError naming the
    line and column of the first problem.
    """
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
    model_class = MODELS.get(args.model.lower())
    if model_class is None:
        raise CommandError(
            f"unknown model {args.model!r}; choose one of {', '.join(sorted(MODELS))}"
        )
    params = parse_params(args.param)
    unknown = set(params) - set(model_class().get_params())
    if unknown:
        raise CommandError(f"{model_class.__name__} has no parameter {sorted(unknown)[0]!r}")
    X, header = read_csv(args.data)
    model = model_class(**params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X)
        except (ValueError, TypeError) as error:
            raise CommandError(f"cannot fit {model_class.__name__}: {_first_line(error)}") from None
        except MemoryError:
            raise CommandError(
                f"cannot fit {model_class.__name__}: not enough memory for these parameters"
            ) from None
    for warning in caught:
        print(f"skem fit: warning: {warning.message}", file=sys.stderr)
    training_scores = np.sort(model.score_samples(X))
    joblib.dump({"model": model, "columns": header, "training_scores": training_scores},
                args.out)
    status = "converged" if model.converged_ else "did not converge"
    print(f"fitted {model_class.__name__} on {X.shape[0]} rows x {X.shape[1]} columns: "
          f"{model.n_iter_} iterations, {status}, mean log-likelihood "
          f"{training_scores.mean():.4f}; saved to {args.out}", file=out)
    return 0


def run_score(args, out=None):
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
    demo.add_argument("--plot", metavar="DIR", help="also write the figures as PNG files in DIR")
    demo.set_defaults(run=run_demo)

    fit = commands.add_parser("fit", help="fit a model on a CSV file and save it")
    fit.add_argument("model", help=f"one of {', '.join(sorted(MODELS))}")
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
