"""The ``skem demo``: every model fitted on data bundled with scikit-learn.

Each section fits its models and returns its numbers (a dataclass, with the
fitted models the figures need); ``format_report`` turns them into the text
the command prints, and ``write_figures`` draws them. Every data set ships with
scikit-learn, so the demo needs no network.
"""

import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_wine
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import AmortizedVAE, EMGaussianMixture, MixtureOfPPCA, ProbabilisticPCA, __version__
from ._core._monitor import plural
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
    feature_names: list = field(repr=False)
    params: dict = field(repr=False)

    @property
    def best_n_components(self):
        return min(self.bic, key=self.bic.get)


@dataclass
class PPCADemo:
    """ProbabilisticPCA on dequantised digits, with and without missing pixels.

    ``held_out`` and ``noise_variance`` hold every latent dimension q from 1
    to n_features - 1 (at q = n_features - 1 the model is a full-covariance
    Gaussian). The fit with missing pixels uses ``missing_n_components``; its
    bound is the mean log-likelihood of each training image's observed
    pixels, which ``complete_on_observed`` gives for the same q fitted on the
    complete images.
    """

    n_train: int
    n_test: int
    n_features: int
    held_out: dict
    noise_variance: dict
    missing_fraction: float
    missing_n_components: int
    mean_observed: float
    missing_lower_bounds: np.ndarray
    missing_converged: bool
    complete_on_observed: float
    missing_held_out: float
    missing_model: ProbabilisticPCA = field(repr=False)

    @property
    def best_n_components(self):
        return max(self.held_out, key=self.held_out.get)


@dataclass
class MixtureOfPPCADemo:
    """MixtureOfPPCA on nearby low-rank Gaussians, against Gaussian mixtures and k-means.

    ``held_out`` and ``adjusted_rand`` map each model's name to its held-out
    mean log-likelihood and to the adjusted Rand index of its held-out
    clusters against the generating components (k-means has no density).
    """

    n_components: int
    n_latent: int
    n_features: int
    separation: float
    n_train: int
    n_test: int
    n_init: int
    lower_bounds: np.ndarray
    converged: bool
    held_out: dict
    adjusted_rand: dict
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
    n_iter_no_change: int
    tol: float
    elbo: float
    reconstruction: float
    kl: float
    n_importance_samples: int
    held_out: float
    mixture_held_out: float
    ppca_n_components: int
    ppca_held_out: float
    model: AmortizedVAE = field(repr=False)
    X_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)

    @property
    def kept_epoch(self):
        """The epoch whose parameters the fit keeps: the best validation ELBO."""
        return int(np.argmax(self.validation_bounds)) + 1


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
        feature_names=list(data.feature_names),
        params=params,
    )


@lru_cache(maxsize=1)
def _digits_split():
    """The demo's split of the dequantised digits: X_train, X_test, y_train, y_test."""
    X, y = load_dequantized_digits()
    return tuple(train_test_split(X, y, random_state=0))


@lru_cache(maxsize=1)
def _ppca_by_latent_dimension():
    """Held-out score and noise variance of PPCA on digits for every q from 1 to d - 1."""
    X_train, X_test = _digits_split()[:2]
    held_out, noise_variance = {}, {}
    for n_components in range(1, X_train.shape[1]):
        model = ProbabilisticPCA(n_components).fit(X_train)
        held_out[n_components] = model.score(X_test)
        noise_variance[n_components] = model.noise_variance_
    return held_out, noise_variance


def probabilistic_pca(missing_fraction=0.2, missing_n_components=20):
    """Fit ProbabilisticPCA on dequantised digits for every q, then with missing pixels."""
    X_train, X_test = _digits_split()[:2]
    held_out, noise_variance = _ppca_by_latent_dimension()
    missing = X_train.copy()
    missing[np.random.RandomState(0).rand(*missing.shape) < missing_fraction] = np.nan
    model = ProbabilisticPCA(missing_n_components, solver="em", random_state=0).fit(missing)
    complete = ProbabilisticPCA(missing_n_components).fit(X_train)
    return PPCADemo(
        n_train=X_train.shape[0],
        n_test=X_test.shape[0],
        n_features=X_train.shape[1],
        held_out=dict(held_out),
        noise_variance=dict(noise_variance),
        missing_fraction=missing_fraction,
        missing_n_components=missing_n_components,
        mean_observed=float(np.mean(np.sum(~np.isnan(missing), axis=1))),
        missing_lower_bounds=model.lower_bounds_,
        missing_converged=bool(model.converged_),
        complete_on_observed=complete.score(missing),
        missing_held_out=model.score(X_test),
        missing_model=model,
    )


def mixture_of_ppca(separation=0.5, n_init=5):
    """Mixture of PPCA on low-rank Gaussians with nearby centres, against Gaussian mixtures.

    Each component varies along its own 3 directions; the centres are close
    (``separation``), so the components differ in their subspaces more than
    in their means.
    """
    n_features, n_latent, n_components = 100, 3, 4
    X, labels = make_low_rank_mixture(
        120, n_features, n_components, n_latent, separation=separation, random_state=0
    )
    X_train, X_test, _, y_test = train_test_split(X, labels, test_size=0.5, random_state=0)
    mixture = MixtureOfPPCA(n_components, n_latent, n_init=n_init, random_state=0).fit(X_train)
    models = {
        f"MixtureOfPPCA({n_components}, {n_latent})": mixture,
        f"EMGaussianMixture({n_components}, 'tied')": EMGaussianMixture(
            n_components, covariance_type="tied", random_state=0
        ).fit(X_train),
        f"EMGaussianMixture({n_components}, 'diag')": EMGaussianMixture(
            n_components, covariance_type="diag", random_state=0
        ).fit(X_train),
    }
    kmeans = KMeans(n_components, random_state=0).fit(X_train)
    adjusted_rand = {
        name: adjusted_rand_score(y_test, m.predict(X_test)) for name, m in models.items()
    }
    adjusted_rand[f"KMeans({n_components})"] = adjusted_rand_score(y_test, kmeans.predict(X_test))
    return MixtureOfPPCADemo(
        n_components=n_components,
        n_latent=n_latent,
        n_features=n_features,
        separation=separation,
        n_train=X_train.shape[0],
        n_test=X_test.shape[0],
        n_init=n_init,
        lower_bounds=mixture.lower_bounds_,
        converged=bool(mixture.converged_),
        held_out={name: m.score(X_test) for name, m in models.items()},
        adjusted_rand=adjusted_rand,
        model=mixture,
        X_test=X_test,
        y_test=y_test,
    )


def vae():
    """Train AmortizedVAE on dequantised digits: ELBO per epoch, held-out scores.

    It is compared on the same held-out images with a mixture of 50 diagonal
    Gaussians and with PPCA at its best held-out q (the PPCA section's scan).
    """
    X_train, X_test, _, y_test = _digits_split()
    model = AmortizedVAE(10, random_state=0).fit(X_train)
    terms = model.elbo_samples(X_test)
    mixture = EMGaussianMixture(50, covariance_type="diag", random_state=0).fit(X_train)
    ppca_held_out = _ppca_by_latent_dimension()[0]
    ppca_n_components = max(ppca_held_out, key=ppca_held_out.get)
    return VAEDemo(
        n_train=X_train.shape[0],
        n_test=X_test.shape[0],
        lower_bounds=model.lower_bounds_,
        validation_bounds=model.validation_bounds_,
        n_iter_no_change=model.n_iter_no_change,
        tol=model.tol,
        elbo=terms["elbo"].mean(),
        reconstruction=terms["reconstruction"].mean(),
        kl=terms["kl"].mean(),
        n_importance_samples=model.n_importance_samples,
        held_out=model.score(X_test),
        mixture_held_out=mixture.score(X_test),
        ppca_n_components=ppca_n_components,
        ppca_held_out=ppca_held_out[ppca_n_components],
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


def _bound_lines(lower_bounds, meaning="the mean log-likelihood"):
    """The bound of each EM iteration and its rise (``lower_bounds_``'s convention)."""
    yield f"  bound: {meaning} before each iteration's M-step (nats per row)"
    yield "  iteration         bound        rise"
    for iteration, bound in enumerate(lower_bounds, start=1):
        rise = "" if iteration == 1 else f"   {bound - lower_bounds[iteration - 2]:+.2e}"
        yield f"  {iteration:9d}   {bound:11.6f}{rise}"


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


def _ppca_lines(result, shown=(1, 2, 5, 10, 20, 30, 40, 50)):
    best, largest = result.best_n_components, result.n_features - 1
    yield (
        f"\nProbabilisticPCA on digits ({result.n_train} training and {result.n_test} "
        f"held-out images, {result.n_features} pixels, dequantised)"
    )
    yield "  q    held-out mean log-likelihood   noise variance"
    for n_components in sorted({*shown, best, largest}):
        note = {best: "  best", largest: "  = one full-covariance Gaussian"}.get(n_components, "")
        yield (
            f"  {n_components:<4d} {result.held_out[n_components]:>28.3f} "
            f"{result.noise_variance[n_components]:>16.4g}{note}"
        )
    yield (
        f"  best held-out q of 1 to {largest} (all PPCA allows in {result.n_features} "
        f"dimensions): {best}; its noise variance {result.noise_variance[best]:.4f}"
    )
    yield "  is near 1/12 = 0.0833, the variance of the added U[0, 1) noise alone"
    q, percent = result.missing_n_components, round(100 * result.missing_fraction)
    yield (
        f"  EM with {percent}% of the training pixels missing (NaN; {result.mean_observed:.1f} "
        f"of {result.n_features} observed per image on average), q={q}:"
    )
    yield from _bound_lines(
        result.missing_lower_bounds[:10], "the mean log-likelihood of the observed pixels"
    )
    n_iterations = len(result.missing_lower_bounds)
    status = "converged" if result.missing_converged else "stopped at max_iter"
    yield (
        f"  ... {status} after {plural(n_iterations, 'iteration')}, last bound "
        f"{result.missing_lower_bounds[-1]:.3f}"
    )
    yield (
        f"  the q={q} model fitted on the complete training images scores the same "
        f"observed pixels {result.complete_on_observed:.3f}"
    )
    yield (
        f"  held-out mean log-likelihood of the complete test images: "
        f"{result.missing_held_out:.3f} (fitted on complete images: {result.held_out[q]:.3f})"
    )


def _mixture_of_ppca_lines(result):
    yield (
        f"\nMixtureOfPPCA on {result.n_components} low-rank Gaussians in "
        f"{result.n_features} dimensions ({result.n_train} training rows, "
        f"{result.n_test} held out)"
    )
    yield (
        f"each varies along its own {result.n_latent} directions around nearby centres "
        f"(separation {result.separation}); the best of {result.n_init} restarts:"
    )
    yield from _bound_lines(result.lower_bounds)
    status = "converged" if result.converged else "stopped at max_iter"
    yield f"  {status} after {plural(len(result.lower_bounds), 'iteration')}"
    yield (f"  {'':<28}held-out mean log-likelihood   adjusted Rand index of the held-out clusters")
    for name, adjusted_rand in result.adjusted_rand.items():
        held_out = f"{result.held_out[name]:.2f}" if name in result.held_out else "(no density)"
        yield f"  {name:<28}{held_out:>28}   {adjusted_rand:.3f}"
    per_component = result.n_train // result.n_components
    yield (
        f"  full covariances are left out: each {result.n_features} x {result.n_features} "
        f"covariance would rest on about {per_component} rows, so it is singular"
    )


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
    yield (
        f"  stopped after {len(result.lower_bounds)} epochs ({result.n_iter_no_change} in a "
        f"row without a validation gain above tol={result.tol:g})"
    )
    yield (
        f"  kept epoch {result.kept_epoch}, the best validation ELBO "
        f"({result.validation_bounds[result.kept_epoch - 1]:.3f})"
    )
    yield (
        f"  held-out ELBO {result.elbo:.2f} = reconstruction {result.reconstruction:.2f}"
        f" - KL {result.kl:.2f}"
    )
    yield (
        f"  held-out mean log-likelihood: {result.held_out:.2f} (importance-weighted, "
        f"{result.n_importance_samples} draws per image)"
    )
    yield (
        f"  the same images under EMGaussianMixture(50, 'diag'): "
        f"{result.mixture_held_out:.2f}; under ProbabilisticPCA({result.ppca_n_components}), "
        f"the best q above: {result.ppca_held_out:.2f}"
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


def _ellipses_figure(figure, result, dimensions=(0, 6)):
    from . import plotting

    ax = figure.subplots()
    plotting.plot_mixture_ellipses(result.model, result.X_train, dimensions=dimensions, ax=ax)
    first, second = (result.feature_names[i] for i in dimensions)
    ax.set_xlabel(f"{first} (standardised)")
    ax.set_ylabel(f"{second} (standardised)")


def _missing_pixels_figure(figure, result):
    from . import plotting

    ax = figure.subplots()
    plotting.plot_lower_bounds(result.missing_model, ax=ax)
    ax.set_ylabel("mean log-likelihood of the observed pixels (nats)")
    ax.set_title(
        f"ProbabilisticPCA(q={result.missing_n_components}), "
        f"{round(100 * result.missing_fraction)}% of the training pixels missing"
    )


def _mixture_of_ppca_figure(figure, result):
    from . import plotting

    for ax, components in zip(figure.subplots(1, 2), [(0, 1), (2, 3)]):
        plotting.plot_latent_space(
            result.model, result.X_test, result.y_test, ax=ax, components=components
        )
        title = ax.get_title()
        ax.set_title("components {} and {}".format(*components))
        ax.get_legend().remove()
    figure.suptitle(f"{title.replace(chr(10), '; ')} (held-out rows)")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")


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
    figures = {  # name: (size in inches, drawing on the figure)
        "gaussian_mixture_bound.png": (
            (6, 4.5),
            lambda figure: plotting.plot_lower_bounds(mixture.model, ax=figure.subplots()),
        ),
        "gaussian_mixture_hill_climbing.png": (
            (6, 4.5),
            lambda figure: plotting.plot_hill_climbing(
                EMGaussianMixture(**mixture.params), mixture.X_train, ax=figure.subplots()
            ),
        ),
        "gaussian_mixture_ellipses.png": (
            (6, 4.5),
            lambda figure: _ellipses_figure(figure, mixture),
        ),
        "ppca_missing_values_bound.png": (
            (6, 4.5),
            lambda figure: _missing_pixels_figure(figure, ppca),
        ),
        "mixture_of_ppca_latent_space.png": (
            (11, 4.5),
            lambda figure: _mixture_of_ppca_figure(figure, low_rank),
        ),
        "vae_bounds.png": (
            (6, 4.5),
            lambda figure: plotting.plot_lower_bounds(vae_result.model, ax=figure.subplots()),
        ),
        "vae_latent_space.png": (
            (6.5, 4.5),
            lambda figure: plotting.plot_latent_space(
                vae_result.model, vae_result.X_test, vae_result.y_test, ax=figure.subplots()
            ),
        ),
    }
    Path(directory).mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (size, draw) in figures.items():
        figure = plt.figure(figsize=size)
        draw(figure)
        figure.tight_layout()
        figure.savefig(Path(directory) / name, dpi=100)
        plt.close(figure)
        paths.append(Path(directory) / name)
    return paths
