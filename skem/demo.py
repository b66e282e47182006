"""The ``skem demo``: every model fitted on data bundled with scikit-learn.

Each section fits its models and returns its numbers (a dataclass, with the
fitted models the figures need); ``format_report`` turns them into the text
the command prints, and ``write_figures`` draws them. Every data set ships with
scikit-learn, so the demo needs no network.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.datasets import load_wine
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import AmortizedVAE, EMGaussianMixture, MixtureOfPPCA, ProbabilisticPCA, __version__
from ._monitor import plural
from .datasets import load_anomaly_split, load_dequantized_digits, make_low_rank_mixture


@dataclass
class GaussianMixtureDemo:
    """EMGaussianMixture on standardised wine, against scikit-learn."""

    n_train: int
    n_test: int
    n_features: int
    lower_bounds: np.ndarray
    converged: bool
    held_out: float
    sklearn_held_out: float
    adjusted_rand: float
    bic: dict
    model: EMGaussianMixture = field(repr=False)
    X_train: np.ndarray = field(repr=False)
    params: dict = field(repr=False)

    @property
    def best_n_components(self):
        return min(self.bic, key=self.bic.get)


@dataclass
class PPCADemo:
    """ProbabilisticPCA on dequantised digits, with and without missing pixels."""

    n_train: int
    n_test: int
    n_features: int
    held_out: dict
    noise_variance: dict
    missing_lower_bounds: np.ndarray
    missing_held_out: float
    missing_model: ProbabilisticPCA = field(repr=False)

    @property
    def best_n_components(self):
        return max(self.held_out, key=self.held_out.get)


@dataclass
class MixtureOfPPCADemo:
    """MixtureOfPPCA against full covariances on few rows of low-rank Gaussians."""

    n_components: int
    n_features: int
    n_train: int
    n_test: int
    lower_bounds: np.ndarray
    held_out: float
    full_held_out: float
    adjusted_rand: float
    model: MixtureOfPPCA = field(repr=False)
    X_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)


@dataclass
class VAEDemo:
    """AmortizedVAE on dequantised digits against a mixture and PPCA."""

    n_train: int
    n_test: int
    lower_bounds: np.ndarray
    validation_bounds: np.ndarray
    elbo: float
    reconstruction: float
    kl: float
    held_out: float
    mixture_held_out: float
    ppca_held_out: float
    model: AmortizedVAE = field(repr=False)
    X_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)


@dataclass
class AnomalyDemo:
    """score_samples as an anomaly score on the breast-cancer split."""

    n_train: int
    n_benign: int
    n_malignant: int
    roc_auc: dict


def gaussian_mixture():
    """Fit EMGaussianMixture on the wine data: bound, held-out scores and BIC."""
    data = load_wine()
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    params = dict(n_components=3, covariance_type="diag", tol=1e-6, random_state=0)
    model = EMGaussianMixture(**params).fit(X_train)
    reference = GaussianMixture(**params).fit(X_train)
    bic = {
        n_components: EMGaussianMixture(n_components, covariance_type="diag", random_state=0)
        .fit(X_train)
        .bic(X_train)
        for n_components in range(1, 6)
    }
    return GaussianMixtureDemo(
        n_train=X_train.shape[0],
        n_test=X_test.shape[0],
        n_features=X_train.shape[1],
        lower_bounds=model.lower_bounds_,
        converged=model.converged_,
        held_out=model.score(X_test),
        sklearn_held_out=reference.score(X_test),
        adjusted_rand=adjusted_rand_score(y_test, model.predict(X_test)),
        bic=bic,
        model=model,
        X_train=X_train,
        params=params,
    )


def probabilistic_pca():
    """Fit ProbabilisticPCA on dequantised digits, then with 20% missing pixels."""
    X, _ = load_dequantized_digits()
    X_train, X_test = train_test_split(X, random_state=0)
    held_out, noise_variance = {}, {}
    for n_components in (2, 10, 20, 40, 63):
        model = ProbabilisticPCA(n_components).fit(X_train)
        held_out[n_components] = model.score(X_test)
        noise_variance[n_components] = model.noise_variance_
    missing = X_train.copy()
    missing[np.random.RandomState(0).rand(*missing.shape) < 0.2] = np.nan
    model = ProbabilisticPCA(20, solver="em", random_state=0).fit(missing)
    return PPCADemo(
        n_train=X_train.shape[0],
        n_test=X_test.shape[0],
        n_features=X_train.shape[1],
        held_out=held_out,
        noise_variance=noise_variance,
        missing_lower_bounds=model.lower_bounds_,
        missing_held_out=model.score(X_test),
        missing_model=model,
    )


def mixture_of_ppca():
    """Mixture of PPCA against full-covariance Gaussians where the rows are few."""
    n_features, n_latent, n_components = 100, 3, 4
    X, labels = make_low_rank_mixture(120, n_features, n_components, n_latent, random_state=0)
    X_train, X_test, _, y_test = train_test_split(X, labels, test_size=0.5, random_state=0)
    mixture = MixtureOfPPCA(n_components, n_latent, random_state=0).fit(X_train)
    full = EMGaussianMixture(n_components, random_state=0).fit(X_train)
    return MixtureOfPPCADemo(
        n_components=n_components,
        n_features=n_features,
        n_train=X_train.shape[0],
        n_test=X_test.shape[0],
        lower_bounds=mixture.lower_bounds_,
        held_out=mixture.score(X_test),
        full_held_out=full.score(X_test),
        adjusted_rand=adjusted_rand_score(y_test, mixture.predict(X_test)),
        model=mixture,
        X_test=X_test,
        y_test=y_test,
    )


def vae():
    """Train AmortizedVAE on dequantised digits: ELBO per epoch, held-out scores."""
    X, y = load_dequantized_digits()
    X_train, X_test, _, y_test = train_test_split(X, y, random_state=0)
    model = AmortizedVAE(10, random_state=0).fit(X_train)
    terms = model.elbo_samples(X_test)
    mixture = EMGaussianMixture(50, covariance_type="diag", random_state=0).fit(X_train)
    return VAEDemo(
        n_train=X_train.shape[0],
        n_test=X_test.shape[0],
        lower_bounds=model.lower_bounds_,
        validation_bounds=model.validation_bounds_,
        elbo=terms["elbo"].mean(),
        reconstruction=terms["reconstruction"].mean(),
        kl=terms["kl"].mean(),
        held_out=model.score(X_test),
        mixture_held_out=mixture.score(X_test),
        ppca_held_out=ProbabilisticPCA(40).fit(X_train).score(X_test),
        model=model,
        X_test=X_test,
        y_test=y_test,
    )


def anomaly_detection():
    """Benign tumours in, malignant ones flagged by a low log-density."""
    X_train, X_test, is_anomaly = load_anomaly_split()
    detectors = {
        "EMGaussianMixture(2)": EMGaussianMixture(2, random_state=0),
        "ProbabilisticPCA(5)": ProbabilisticPCA(5),
        "AmortizedVAE(4)": AmortizedVAE(4, random_state=0),
    }
    roc_auc = {}
    for name, detector in detectors.items():
        scores = make_pipeline(StandardScaler(), detector).fit(X_train).score_samples(X_test)
        roc_auc[name] = roc_auc_score(is_anomaly, -scores)
    n_malignant = int(is_anomaly.sum())
    return AnomalyDemo(
        n_train=X_train.shape[0],
        n_benign=len(X_test) - n_malignant,
        n_malignant=n_malignant,
        roc_auc=roc_auc,
    )


#: The demo's sections, in the order they run and print.
SECTIONS = {
    "gaussian_mixture": gaussian_mixture,
    "probabilistic_pca": probabilistic_pca,
    "mixture_of_ppca": mixture_of_ppca,
    "vae": vae,
    "anomaly_detection": anomaly_detection,
}


def run(sections=None, progress=None):
    """Run the demo's sections; return their results by name.

    ``progress``, if given, is called with each section's name before it runs.
    """
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        for name in sections or SECTIONS:
            if progress is not None:
                progress(name)
            results[name] = SECTIONS[name]()
    return results


# ---------------------------------------------------------------------- text


def _bound_lines(lower_bounds):
    yield "  iteration   lower bound (mean log-likelihood, nats)"
    for iteration, bound in enumerate(lower_bounds, start=1):
        yield f"  {iteration:9d}   {bound: .6f}"


def _gaussian_mixture_lines(result):
    yield (
        f"EMGaussianMixture on wine ({result.n_train} training and {result.n_test} "
        f"held-out rows, {result.n_features} standardised features)"
    )
    yield "3 components, diagonal covariances:"
    yield from _bound_lines(result.lower_bounds)
    status = "converged" if result.converged else "stopped at max_iter"
    yield f"  {status} after {plural(len(result.lower_bounds), 'iteration')}"
    yield (
        f"  held-out mean log-likelihood: {result.held_out:.4f} nats "
        f"(scikit-learn's GaussianMixture, same start: {result.sklearn_held_out:.4f})"
    )
    yield f"  adjusted Rand index of held-out clusters vs cultivar: {result.adjusted_rand:.3f}"
    listing = ", ".join(f"{k}: {v:.0f}" for k, v in result.bic.items())
    yield f"  BIC by number of components: {listing} -> best {result.best_n_components}"


def _ppca_lines(result):
    yield (
        f"\nProbabilisticPCA on digits ({result.n_train} training and {result.n_test} "
        f"held-out images, {result.n_features} pixels, dequantised)"
    )
    yield "  q    held-out mean log-likelihood   noise variance"
    for n_components, score in result.held_out.items():
        yield (f"  {n_components:<4d} {score:>28.3f} {result.noise_variance[n_components]:>16.4g}")
    yield f"  best held-out q: {result.best_n_components}"
    yield "  EM with 20% of the training pixels missing, q=20:"
    yield from _bound_lines(result.missing_lower_bounds[:10])
    if len(result.missing_lower_bounds) > 10:
        yield (
            f"  ... {plural(len(result.missing_lower_bounds), 'iteration')} in all, last bound "
            f"{result.missing_lower_bounds[-1]:.6f}"
        )
    yield (
        f"  held-out mean log-likelihood: {result.missing_held_out:.3f} "
        f"(complete data: {result.held_out[20]:.3f})"
    )


def _mixture_of_ppca_lines(result):
    yield (
        f"\nMixtureOfPPCA on {result.n_components} low-rank Gaussians in "
        f"{result.n_features} dimensions ({result.n_train} training rows, "
        f"{result.n_test} held out)"
    )
    yield from _bound_lines(result.lower_bounds)
    yield (
        f"  held-out mean log-likelihood: {result.held_out:.2f} nats; "
        f"EMGaussianMixture(full), which has a d x d covariance to estimate per "
        f"component: {result.full_held_out:.4g} nats"
    )
    yield f"  adjusted Rand index of held-out clusters: {result.adjusted_rand:.3f}"


def _vae_lines(result):
    yield (
        f"\nAmortizedVAE on digits ({result.n_train} training and {result.n_test} "
        "held-out images, dequantised), 10 latent dimensions, default settings"
    )
    yield "  epoch   training ELBO   validation ELBO (nats per image)"
    for epoch in range(0, len(result.lower_bounds), 25):
        yield (
            f"  {epoch + 1:5d}   {result.lower_bounds[epoch]:13.3f}   "
            f"{result.validation_bounds[epoch]:15.3f}"
        )
    yield (f"  stopped after {len(result.lower_bounds)} epochs, keeping the best validation epoch")
    yield (
        f"  held-out ELBO {result.elbo:.2f} = reconstruction {result.reconstruction:.2f}"
        f" - KL {result.kl:.2f}; importance-weighted log-likelihood {result.held_out:.2f}"
    )
    yield (
        f"  EMGaussianMixture(50, 'diag'): {result.mixture_held_out:.2f}; "
        f"ProbabilisticPCA(40): {result.ppca_held_out:.2f}"
    )


def _anomaly_lines(result):
    yield (
        f"\nAnomaly detection on breast cancer: trained on {result.n_train} benign "
        f"tumours, scoring {result.n_benign} held-out benign and {result.n_malignant} "
        "malignant ones"
    )
    for name, auc in result.roc_auc.items():
        yield f"  {name:<22} ROC AUC {auc:.3f}"


_FORMATTERS = {
    "gaussian_mixture": _gaussian_mixture_lines,
    "probabilistic_pca": _ppca_lines,
    "mixture_of_ppca": _mixture_of_ppca_lines,
    "vae": _vae_lines,
    "anomaly_detection": _anomaly_lines,
}


def format_report(results):
    """The demo's printed report of ``run``'s results."""
    lines = [f"skem {__version__} demo: EM models on data bundled with scikit-learn"]
    for name, result in results.items():
        lines.extend(_FORMATTERS[name](result))
    return "\n".join(lines)


# ---------------------------------------------------------------------- figures


def write_figures(results, directory):
    """The demo's figures as PNG files in ``directory``; returns their paths.

    Needs matplotlib (``pip install "skem[plot]"``) and every section's results.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotting

    mixture, ppca = results["gaussian_mixture"], results["probabilistic_pca"]
    low_rank, vae_result = results["mixture_of_ppca"], results["vae"]
    figures = {
        "gaussian_mixture_bound.png": lambda ax: plotting.plot_lower_bounds(mixture.model, ax=ax),
        "gaussian_mixture_hill_climbing.png": lambda ax: plotting.plot_hill_climbing(
            EMGaussianMixture(**mixture.params), mixture.X_train, ax=ax
        ),
        "gaussian_mixture_ellipses.png": lambda ax: plotting.plot_mixture_ellipses(
            mixture.model, mixture.X_train, dimensions=(0, 6), ax=ax
        ),
        "ppca_missing_values_bound.png": lambda ax: plotting.plot_lower_bounds(
            ppca.missing_model, ax=ax
        ),
        "mixture_of_ppca_latent_space.png": lambda ax: plotting.plot_latent_space(
            low_rank.model, low_rank.X_test, low_rank.y_test, ax=ax
        ),
        "vae_bounds.png": lambda ax: plotting.plot_lower_bounds(vae_result.model, ax=ax),
        "vae_latent_space.png": lambda ax: plotting.plot_latent_space(
            vae_result.model, vae_result.X_test, vae_result.y_test, ax=ax
        ),
    }
    Path(directory).mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in figures.items():
        figure, ax = plt.subplots(figsize=(6, 4.5))
        draw(ax)
        figure.tight_layout()
        figure.savefig(Path(directory) / name, dpi=100)
        plt.close(figure)
        paths.append(Path(directory) / name)
    return paths
