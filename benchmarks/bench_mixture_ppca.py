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

The speed section also fits the two low-rank models at the GMM's default
``tol=1e-3`` (theirs is 1e-4). Every EM model now runs a small fit in memory
on one BLAS thread and its k-means start on one OpenMP thread
(``fit_blas_threads``, ``start_threads`` of ``skem._core._parallel``); the
row "thread rule" below measured the GMM with these rules before they were
made the default for every model.

RESULTS (speed section, 5 components, ``--speed-repeats 5``; AMD EPYC, 2
cores shared with another process that kept them busy most of the time, so
single fits vary up to tenfold; numpy 2.4.6, OpenBLAS 0.3.31 pthreads,
scikit-learn 1.9.1; medians over two runs each, seconds). Every model's
iterations and bounds are as before these changes:

===================================  ===  =========  ===========  ============  ==========
model                                it   bound      default      1 BLAS        process 1
                                                     threads      thread        thread
===================================  ===  =========  ===========  ============  ==========
MixtureOfPPCA (closed form), before  23   -142.949   1.31 - 1.32  0.13 - 0.33   0.130
MixtureOfPPCA (closed form), now     23   -142.949   0.13 - 0.23  0.13 - 0.19   0.120 - 0.123
MixtureOfFactorAnalyzers, before     71   -116.391   1.77 - 2.99  0.29 - 0.50   0.274 - 0.281
MixtureOfFactorAnalyzers, now        71   -116.391   0.24 - 0.40  0.24 - 0.38   0.229 - 0.243
MixtureOfPPCA, tol=1e-3, now         11   -142.971   0.07 - 0.11  0.07 - 0.10
MixtureOfFactorAnalyzers, tol=1e-3   47   -116.410   0.18 - 0.25  0.16 - 0.26
EMGaussianMixture(full)              7    -110.540   0.30 - 0.38  0.04 - 0.36   0.038 - 0.042
EMGaussianMixture(full), thread rule 7    -110.540   0.08 - 0.11  0.04 - 0.06
===================================  ===  =========  ===========  ============  ==========

("process 1 thread": OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1, 7 alternating
repeats, the quietest setting.) On the busy machine, with default threads,
both low-rank models now fit in less time than EMGaussianMixture(full)
(ratios 0.43 - 0.61 and 0.82 - 1.04), but only because the GMM loses 0.2 to
0.3 s to its threads (scikit-learn's KMeans on two OpenMP threads took 0.2 s
where one took 8 ms); with the same thread rules, or on one thread, the GMM
is 1.6 to 3.2 times faster than MixtureOfPPCA and 3 to 6.4 times faster than
MixtureOfFactorAnalyzers. Per iteration the low-rank models now cost about
what the GMM's does (about 5, 3 and 4 ms on one thread); the difference is
the iterations (23 and 71 against 7), which neither SQUAREM's step settings
nor a factor-analysis start per k-means cluster reduced at the same bound.

With the thread rules in every model, on a quiet machine (load average
0.8; 2026-12-07, ``--repeats 1 --speed-components 5 --speed-repeats 5``),
seconds and ratio to EMGaussianMixture(full), default threads / one BLAS
thread: MixtureOfPPCA 0.123 / 0.128 (3.1x / 3.2x, 23 iterations),
MixtureOfFactorAnalyzers 0.237 / 0.242 (6.0x, 71 iterations; 0.157 s and
47 iterations at tol=1e-3), EMGaussianMixture(full) 0.039 / 0.041 (7
iterations). Per iteration all three cost 3.3 to 5.9 ms: the target "each
low-rank mixture in at most the GMM's time" is not met, by their iterations.

After the statistics took the E-step's residuals and MixtureOfFactorAnalyzers'
E-step stopped dividing every row by sqrt(psi) (2026-12-07, load average 1.1
to 2.3, three runs of ``--repeats 1 --speed-components 5 --speed-repeats 5``,
one with OPENBLAS_NUM_THREADS=1; default threads and one BLAS thread agree
within noise), seconds and ratio to EMGaussianMixture(full) (0.036 - 0.037 s,
7 iterations): MixtureOfPPCA 0.111 - 0.116 (3.1 - 3.2x, 23 iterations of
4.8 - 5.0 ms: per iteration the K d x d scatters cost about 1.0 ms and the
five 64 x 64 eigh 1.4 ms, both at their floor), MixtureOfFactorAnalyzers
0.177 - 0.178 (4.8 - 4.95x, 71 iterations of 2.5 ms; 0.215 - 0.221 before,
same conditions), without SQUAREM 0.285 - 0.293 (122 iterations); at
tol=1e-3 0.060 - 0.063 (1.7x, 11 iterations) and 0.118 - 0.122 (3.3x, 47).
Iterations and bounds are as before. Both now cost less per iteration than
the GMM (5.1 ms with its start); the target is missed by the iterations.

Tried without success for MixtureOfFactorAnalyzers (random_state=0; the
plain fit ends at -116.3918): PX-EM's factor step (Liu, Rubin & Wu 1998: W
times the Cholesky factor of the mean E[z z^T]) took 85 plain iterations but
stopped at -116.3975, and 70 with SQUAREM; SQUAREM's S1 and S2 steps and
other step caps 70 - 112 iterations; SQUAREM on loadings rotated to a
canonical form 93 - 97; 10 and 100 factor steps per M-step (from the d x d
scatters) 65 and 25 iterations, at -116.32 and -116.78, other optima. The
slow part is the responsibilities, not the factor step: after 10 E-steps
every variant was at or below -116.77, after 20 at or below -116.58. For
MixtureOfPPCA the eigenvectors of the closed form flip and swap between
iterations, so W is no smooth path for SQUAREM; SQUAREM on (weights, means, W W^T, log noise) took
14 iterations instead of 23 here but ended 1.6e-5 lower, and on iris, wine,
breast cancer and digits (3 and 5 components, 3 seeds) it was as often
slower or lower (once 0.086 nats lower). The start costs 9.9 ms against the
GMM's 5.4 ms (five randomized SVDs of 1 - 1.5 ms): the exact closed form
from the k-means responsibilities costs about 3 ms and gives MixtureOfPPCA
the same iterations and bounds within 1e-5 (4 seeds), but moves
MixtureOfFactorAnalyzers' path (34 -> 26 iterations on one seed, -117.13 ->
-117.18 on another), so it was not made.

Also tried (2026-12-07, the issue's split: dequantised digits (X + U)/17, 80/20,
random_state=0, K=5, q=10, default tol=1e-4): Anderson acceleration (memory
m = 2, 3, 5, 8; the plain EM step taken whenever the bound at the
extrapolated point falls below the last one). MixtureOfFactorAnalyzers,
iterations and final bound for random_state 0 / 1 / 2: plain EM 58 / 39 / 48
(65.4838 / 65.1288 / 65.3605), SQUAREM 29 / 26 / 31 (65.4504 / 65.1296 /
65.3609), Anderson 21 - 54 (m=2: 49 / 29 / 21, m=5: 33 / 30 / 54; bounds
65.2885 - 65.4890, 1 - 9 extrapolations rejected per fit): no better than
SQUAREM, and as often lower. At equal tol on this split EMGaussianMixture(full)
converges in 7 iterations at any tol down to 1e-5, MixtureOfPPCA in 13 (tol=1e-3)
or 15 (1e-4 and 1e-5: its fixed point), so its iterations are those of its
responsibilities, not of a slow factor step.

After the scatters stopped summing the rows that change them by less than
their rounding (commits 284f5da and 01d6e64, from 32 features; load average
1.1, 15 fits each, three alternating runs of the old and new code, ms, the
issue's split): EMGaussianMixture(full) 39 - 42 -> 34 - 36, MixtureOfPPCA
88 - 89 -> 75 - 78, MixtureOfFactorAnalyzers 87 - 95 -> 91 - 97 (its O(n d q)
sums skip nothing: it did not pay); the same iterations, bounds equal to
1e-14. The ratios to the GMM: about 2.2 and 2.7.
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
        # the low-rank models at the GMM's default tol (theirs is 1e-4)
        "MixtureOfPPCA (tol=1e-3)": lambda: MixtureOfPPCA(
            n_components, n_latent, tol=1e-3, random_state=0
        ),
        "MixtureOfFactorAnalyzers (tol=1e-3)": lambda: MixtureOfFactorAnalyzers(
            n_components, n_latent, tol=1e-3, random_state=0
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
            f"    {'model':<36} {'fit s':>8} {'n_iter_':>8} {'s/iter':>8} "
            f"{'train bound':>12} {'held-out nats':>14} {'/ full':>7}"
        )
        medians = {name: float(np.median(times[name])) for name in names}
        full = medians["EMGaussianMixture(full)"]
        for name in names:
            model = fitted[name]
            print(
                f"    {name:<36} {medians[name]:>8.3f} {model.n_iter_:>8d} "
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
