"""MixtureOfPPCA against EMGaussianMixture: held-out likelihood, parameters, time.

Two data sets, each split in half: one where the mixture of PPCA's assumption
holds (low-rank Gaussians plus isotropic noise in high dimension, few rows per
component) and one where it does not (dequantised digits, whose noise differs
from pixel to pixel). Prints the held-out mean log-likelihood, the number of
free parameters and the fit time (median of repeats) of each model, and the
ratio of fit times.

A last section times whole fits on the dequantised digits' training rows
(64 features, ``n_latent=10``): MixtureOfPPCA with its closed-form M-step (the
default up to 200 features), with the one-step M-step it uses above 200 (for
reference) and with SQUAREM, MixtureOfFactorAnalyzers with SQUAREM (its
default) and without, and EMGaussianMixture(covariance_type='full'), each with the
default BLAS threads and with BLAS limited to one thread. The machine may be
shared, so the models take turns within every repeat (the order rotating) and
the median of the repeats is reported, with the iterations of each fit.

    python benchmarks/bench_mixture_ppca.py [--n-features 200] [--repeats 3]
        [--speed-components 5,10] [--speed-repeats 9]
"""

import argparse
import time
import warnings
from contextlib import nullcontext

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from skem import (
    DegenerateComponentWarning,
    EMGaussianMixture,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
)
from skem.datasets import load_dequantized_digits, make_low_rank_mixture
from skem.mixture import _mixture_ppca


def timed_fit(make, X, repeats):
    times = []
    for _ in range(repeats):
        model = make()
        start = time.perf_counter()
        model.fit(X)
        times.append(time.perf_counter() - start)
    return model, float(np.median(times))


def compare(title, X_train, X_test, n_components, n_latent, repeats):
    print(
        f"\n{title}: {X_train.shape[0]} training and {X_test.shape[0]} held-out rows, "
        f"{X_train.shape[1]} features, {n_components} components"
    )
    contenders = {
        f"MixtureOfPPCA(n_latent={n_latent})": lambda: MixtureOfPPCA(
            n_components, n_latent, random_state=0
        ),
        "EMGaussianMixture(full)": lambda: EMGaussianMixture(
            n_components, covariance_type="full", random_state=0
        ),
        "EMGaussianMixture(diag)": lambda: EMGaussianMixture(
            n_components, covariance_type="diag", random_state=0
        ),
    }
    print(f"  {'model':<30} {'held-out nats':>14} {'parameters':>11} {'fit s':>8}")
    times = {}
    for name, make in contenders.items():
        model, times[name] = timed_fit(make, X_train, repeats)
        print(
            f"  {name:<30} {model.score(X_test):>14.2f} {model._n_parameters():>11d} "
            f"{times[name]:>8.3f}"
        )
    mixture, full = list(times)[:2]
    print(f"  fit time ratio {mixture} / {full}: {times[mixture] / times[full]:.3f}")


class OneStepMixtureOfPPCA(MixtureOfPPCA):
    """MixtureOfPPCA with the one-step M-step it uses above the feature threshold."""

    def _uses_closed_form(self, n_features):
        return False


def speed(X_train, X_test, n_components, n_latent, repeats):
    """Fit time (median of alternating repeats) and iterations, closed form vs GMM."""
    print(
        f"\nFit speed, dequantised digits: {X_train.shape[0]} training rows, "
        f"{X_train.shape[1]} features, {n_components} components, n_latent={n_latent} "
        f"(closed-form M-step up to {_mixture_ppca.CLOSED_FORM_MAX_FEATURES} features; "
        f"median of {repeats} repeats, models alternating)"
    )
    contenders = {
        "MixtureOfPPCA (closed form)": lambda: MixtureOfPPCA(
            n_components, n_latent, random_state=0
        ),
        "MixtureOfPPCA (one-step M)": lambda: OneStepMixtureOfPPCA(
            n_components, n_latent, random_state=0
        ),
        "MixtureOfPPCA (SQUAREM)": lambda: MixtureOfPPCA(
            n_components, n_latent, accelerate=True, random_state=0
        ),
        "MixtureOfFactorAnalyzers": lambda: MixtureOfFactorAnalyzers(
            n_components, n_latent, random_state=0
        ),
        "MixtureOfFactorAnalyzers (plain)": lambda: MixtureOfFactorAnalyzers(
            n_components, n_latent, accelerate=False, random_state=0
        ),
        "EMGaussianMixture(full)": lambda: EMGaussianMixture(
            n_components, covariance_type="full", random_state=0
        ),
    }
    names = list(contenders)
    for threads in ("default", "1 thread"):
        times = {name: [] for name in names}
        fitted = {}
        limit = threadpool_limits(1, user_api="blas") if threads == "1 thread" else nullcontext()
        with limit:
            for repeat in range(repeats):
                for i in range(len(names)):
                    name = names[(i + repeat) % len(names)]
                    model = contenders[name]()
                    start = time.perf_counter()
                    model.fit(X_train)
                    times[name].append(time.perf_counter() - start)
                    fitted[name] = model
        print(f"  BLAS threads: {threads}")
        print(
            f"    {'model':<32} {'fit s':>8} {'n_iter_':>8} {'s/iter':>8} "
            f"{'train bound':>12} {'held-out nats':>14} {'/ full':>7}"
        )
        medians = {name: float(np.median(times[name])) for name in names}
        full = medians["EMGaussianMixture(full)"]
        for name in names:
            model = fitted[name]
            print(
                f"    {name:<32} {medians[name]:>8.3f} {model.n_iter_:>8d} "
                f"{medians[name] / model.n_iter_:>8.4f} {model.lower_bound_:>12.4f} "
                f"{model.score(X_test):>14.2f} {medians[name] / full:>7.2f}"
            )
        print(
            f"    fit time ratio closed form / full: {medians[names[0]] / full:.3f}; "
            f"one-step / full: {medians[names[1]] / full:.3f}; "
            f"closed form / one-step: {medians[names[0]] / medians[names[1]]:.3f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-features", type=int, default=200)
    parser.add_argument("--n-components", type=int, default=5)
    parser.add_argument("--n-latent", type=int, default=5)
    parser.add_argument("--n-per-component", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--speed-components",
        default="5,10",
        help="comma-separated numbers of components of the speed section",
    )
    parser.add_argument("--speed-repeats", type=int, default=9)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", DegenerateComponentWarning)

    X, labels = make_low_rank_mixture(
        args.n_per_component, args.n_features, args.n_components, args.n_latent, random_state=0
    )
    X_train, X_test = train_test_split(X, test_size=0.5, random_state=0, stratify=labels)
    compare(
        "Assumption holds (low rank + isotropic noise)",
        X_train,
        X_test,
        args.n_components,
        args.n_latent,
        args.repeats,
    )

    X, _ = load_dequantized_digits()
    X_train, X_test = train_test_split(X, random_state=0)
    compare(
        "Assumption fails (dequantised digits, per-pixel noise)",
        X_train,
        X_test,
        10,
        10,
        args.repeats,
    )

    for n_components in map(int, args.speed_components.split(",")):
        speed(X_train, X_test, n_components, 10, args.speed_repeats)


if __name__ == "__main__":
    main()
