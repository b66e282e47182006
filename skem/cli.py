"""The ``skem`` command line: ``skem demo`` fits the models on bundled data.

Every data set used here ships with scikit-learn, so the demo needs no network.
"""

import argparse
import sys
import warnings

import numpy as np
from sklearn.datasets import load_digits, load_wine
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from . import AmortizedVAE, EMGaussianMixture, MixtureOfPPCA, ProbabilisticPCA, __version__
from .datasets import make_low_rank_mixture


def _print_bounds(lower_bounds, out):
    print("  iteration   lower bound (mean log-likelihood, nats)", file=out)
    for iteration, bound in enumerate(lower_bounds, start=1):
        print(f"  {iteration:9d}   {bound: .6f}", file=out)


def demo_gaussian_mixture(out=sys.stdout):
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


def demo_probabilistic_pca(out=sys.stdout):
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


def demo_mixture_of_ppca(out=sys.stdout):
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


def demo_vae(out=sys.stdout):
    """Train AmortizedVAE on dequantised digits: ELBO per epoch, held-out scores."""
    rng = np.random.RandomState(1)
    pixels = load_digits().data
    X_train, X_test = train_test_split(pixels + rng.uniform(size=pixels.shape), random_state=0)
    print(
        f"\nAmortizedVAE on digits ({X_train.shape[0]} training and {X_test.shape[0]} "
        "held-out images, dequantised), 10 latent dimensions, default settings",
        file=out,
    )
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


def run_demo(args, out=sys.stdout):
    print(f"skem {__version__} demo: EM models on data bundled with scikit-learn\n", file=out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        demo_gaussian_mixture(out)
        demo_probabilistic_pca(out)
        demo_mixture_of_ppca(out)
        demo_vae(out)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="skem", description="Latent-variable models trained by EM, from the shell."
    )
    parser.add_argument("--version", action="version", version=f"skem {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="fit the models on bundled data and report")
    demo.set_defaults(run=run_demo)
    return parser


def main(argv=None):
    """Entry point of the ``skem`` console script."""
    args = build_parser().parse_args(argv)
    np.set_printoptions(precision=4, suppress=True)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
