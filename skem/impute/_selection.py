"""The default model of EMImputer: Gaussian mixtures whose numbers of components race.

Each candidate number of components is fitted with some observed values
hidden and scored by its error on them; the candidates not clearly worse than
the best are continued on all the data and averaged.
"""

import math
import warnings
from contextlib import contextmanager

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._core import weighted_moments
from .._core._monitor import plural
from ..exceptions import DegenerateComponentWarning, VarianceFloorWarning
from ..mixture._gaussian_mixture import EMGaussianMixture
from ._average import ImputationAverage

#: Numbers of components the default model chooses from.
COMPONENT_GRID = (1, 2, 3, 5, 10, 20, 30, 50, 100)

#: ``reg_covar`` of the default model, per feature and per average row of a
#: component, in units of the mean variance of the features (see
#: ``default_mixture``).
REG_COVAR_PER_DIMENSION = 0.3

#: Held-out cells wanted to compare the numbers of components, the most
#: rounds of hiding spent to get them, the largest share of the observed
#: values hidden in one round, and the fewest cells worth a comparison (with
#: fewer, the choice would be noise: the default is then one component).
VALIDATION_CELLS = 500
MAX_VALIDATION_ROUNDS = 5
VALIDATION_SHARE = 0.1
MIN_VALIDATION_CELLS = 200

#: A candidate is dropped (and not averaged) once its mean error on the
#: hidden cells exceeds the best candidate's on the same cells by this many
#: standard errors.
RACING_STANDARD_ERRORS = 2.0

#: The most EM iterations of a candidate on the data with hidden values,
#: then of a kept candidate continued on all the data; EM ends sooner, once
#: the bound rises by less than the default model's ``tol``. (Stopping after
#: 6 and 2 iterations, chosen on the masks the constants were tuned on,
#: imputed worse on the held-out masks of ``benchmarks/bench_impute.py``,
#: seeds 100 to 102: by 0.0024 standard deviations on average, in 18 of its
#: 24 cells.)
VALIDATION_ITERATIONS = 100
REFIT_ITERATIONS = 100

#: Errors on held-out cells count squared up to this many standard deviations
#: of their feature and linearly beyond (see ``huber_loss``).
HUBER_THRESHOLD = 3.0


def default_mixture(n_components, X_shape, variance, random_state, max_iter=100):
    """The Gaussian mixture the default imputer fits to data of a given shape.

    A covariance estimated from about ``n_samples / n_components`` rows in
    ``n_features`` dimensions has sampling errors of relative size
    ``n_features * n_components / n_samples`` (zero eigenvalues below one
    row per dimension): the variance floor is a fixed fraction of it, in
    units of the mean ``variance`` of the features (1 once standardised),
    so small components are held closer to spherical. The loose ``tol``
    ends a fit once the imputations, not the last digits of the likelihood,
    settle.
    """
    n_samples, n_features = X_shape
    relative_floor = REG_COVAR_PER_DIMENSION * n_features * n_components / n_samples
    return EMGaussianMixture(
        n_components,
        covariance_type="full",
        reg_covar=variance * max(relative_floor, 1e-6),
        tol=1e-2,
        max_iter=max_iter,
        # one component starts from all rows alike: no k-means to run
        init_params="kmeans" if n_components > 1 else "random",
        random_state=random_state,
    )


def huber_loss(errors, thresholds):
    """Huber's loss of absolute errors: ``e**2`` up to the threshold, linear beyond.

    A squared error is what imputation is judged by, but on held-out cells
    a few extreme values (a feature that is almost always zero, standardised)
    can outweigh all the others together and decide between two models by
    chance; beyond ``thresholds`` they count with the slope they reached.
    """
    return np.where(errors <= thresholds, errors**2, thresholds * (2 * errors - thresholds))


def hide_validation_cells(X, random_state):
    """X with some observed values hidden (NaN) for validation, and their mask.

    At most one value per row, in rows with two or more observed values, and
    at most ``VALIDATION_SHARE`` of the observed values, so the hidden data
    keep nearly the missing share of X and every pair of features stays
    observed together in most rows. No feature loses its last observed value.
    """
    observed = ~np.isnan(X)
    rows = np.flatnonzero(observed.sum(axis=1) >= 2)
    n_hidden = min(rows.size, math.ceil(VALIDATION_SHARE * observed.sum()))
    rows = random_state.permutation(rows)[:n_hidden]
    keys = np.where(observed[rows], random_state.uniform(size=(rows.size, X.shape[1])), -1.0)
    hidden = np.zeros_like(observed)
    hidden[rows, keys.argmax(axis=1)] = True
    hidden[:, observed.sum(axis=0) <= hidden.sum(axis=0)] = False
    return np.where(hidden, np.nan, X), hidden


def validation_errors(model, X_hidden, hidden, X, variances):
    """The model's conditional means minus X on each hidden cell, and the cells' Huber thresholds.

    The thresholds are ``HUBER_THRESHOLD`` standard deviations of each
    cell's feature (see ``huber_loss``).
    """
    rows = np.flatnonzero(hidden.any(axis=1))
    if not rows.size:
        return np.empty(0), np.empty(0)
    imputed = model.impute(X_hidden[rows])
    errors = imputed[hidden[rows]] - X[rows][hidden[rows]]
    thresholds = HUBER_THRESHOLD * np.sqrt(variances[np.nonzero(hidden[rows])[1]])
    return errors, thresholds


def clearly_worse(losses, best_losses):
    """Whether per-cell ``losses`` exceed ``best_losses`` on the same cells beyond noise.

    The mean paired difference is more than ``RACING_STANDARD_ERRORS``
    standard errors above zero.
    """
    differences = losses - best_losses
    error = differences.std(ddof=1) / np.sqrt(differences.size)
    return differences.mean() > RACING_STANDARD_ERRORS * error


class FitTasks:
    """The fits of sub-estimators an estimator makes, each one task of its fit for its callbacks.

    As scikit-learn's meta-estimators report them (``sklearn.callback``,
    scikit-learn >= 1.9): the estimator's fit is the root task, and each
    sub-estimator's fit is a subtask that the sub-estimator's own tasks
    (restarts, iterations) continue, with the callbacks propagated to it.
    Without callbacks (none set on the estimator nor handed down by a
    meta-estimator), ``fit`` only fits.

    Parameters
    ----------
    estimator : estimator or None
        The estimator whose fit this is; None for no callbacks.
    X : array-like
        Its training data, passed to its callbacks.
    max_subtasks : int or None
        The number of fits it makes, None if not known in advance.
    """

    def __init__(self, estimator=None, X=None, max_subtasks=None):
        self.estimator, self.X, self.context = estimator, X, None
        reports = getattr(estimator, "_skl_callbacks", None) or hasattr(
            estimator, "_parent_callback_ctx"
        )
        if reports:
            self.context = estimator._init_callback_context(max_subtasks=max_subtasks)
            self.context.call_on_fit_task_begin(estimator=estimator, X=X)

    def fit(self, model, X, task_name):
        """``model.fit(X)``, reported as the subtask ``task_name``; returns the model."""
        if self.context is None:
            return model.fit(X)
        subcontext = self.context.subcontext(task_name=task_name)
        with subcontext.propagate_callback_context(model):
            subcontext.call_on_fit_task_begin(estimator=self.estimator, X=X)
            model.fit(X)
            subcontext.call_on_fit_task_end(estimator=self.estimator, X=X)
        return model

    def end(self):
        """Close the estimator's task, once it is fitted."""
        if self.context is not None:
            self.context.call_on_fit_task_end(
                estimator=self.estimator,
                X=self.X,
                reconstruction_attributes={},  # (fitted: the callbacks get a copy as it is)
            )


def select_mixtures(X, random_state, tasks=None):
    """Fit the default mixtures to X: the numbers of components that impute best.

    The candidates are the numbers of ``COMPONENT_GRID`` that leave every
    component at least two rows per feature on average, tried in increasing
    order. Each is fitted to X with some observed values hidden
    (``hide_validation_cells``: the comparison is made at nearly the data's
    own missing share), on fresh cells in each round until about
    ``VALIDATION_CELLS`` are hidden, and scored by the ``huber_loss`` of its
    conditional means on the hidden cells once EM has converged. A
    candidate is dropped after the round where it becomes ``clearly_worse``
    than the best so far on the same cells (a race: most candidates are
    settled in one round). The search stops after two candidates in a row
    that do no better than the best (the loss need not fall steadily: three
    components may not beat one where ten do). The candidates that are not
    clearly worse than the best are then continued on all of X (``refit``)
    from their first validation fit, and averaged with equal weights: where
    the data cannot tell the sizes apart (a few hundred rows), an average
    imputes better than any one of them. Returns an
    :class:`ImputationAverage`. Every fit is one of ``tasks`` (a
    :class:`FitTasks`; None reports to no callback).
    """
    tasks = FitTasks() if tasks is None else tasks
    n_samples, n_features = X.shape
    seed = random_state.randint(np.iinfo(np.int32).max)
    variances = weighted_moments(X, None)[1]
    variance = float(np.mean(variances))
    candidates = [k for k in COMPONENT_GRID if n_samples >= 2 * n_features * k] or [1]
    validation = [hide_validation_cells(X, random_state)] if len(candidates) > 1 else []
    n_hidden = int(validation[0][1].sum()) if validation else 0
    if n_hidden * MAX_VALIDATION_ROUNDS < MIN_VALIDATION_CELLS:
        model = default_mixture(1, X.shape, variance, seed)
        return ImputationAverage([tasks.fit(model, X, "fit, 1 component")])
    rounds = min(MAX_VALIDATION_ROUNDS, -(-VALIDATION_CELLS // n_hidden))
    validation += [hide_validation_cells(X, random_state) for _ in range(rounds - 1)]
    n_cells = sum(int(hidden.sum()) for _, hidden in validation)
    scored, best_losses, failures = [], None, 0
    for n_components in candidates:
        losses, start = np.empty(0), None
        for X_hidden, hidden in validation:
            model = default_mixture(n_components, X.shape, variance, seed, VALIDATION_ITERATIONS)
            with quiet_default_fit():
                tasks.fit(model, X_hidden, f"validation fit, {plural(n_components, 'component')}")
            errors, thresholds = validation_errors(model, X_hidden, hidden, X, variances)
            losses = np.concatenate([losses, huber_loss(np.abs(errors), thresholds)])
            start = model if start is None else start
            if best_losses is not None and clearly_worse(losses, best_losses[: losses.size]):
                break
        complete = losses.size == n_cells  # (not dropped by the race)
        if complete:
            scored.append((start, losses))
        if complete and (best_losses is None or losses.sum() < best_losses.sum()):
            best_losses, failures = losses, 0
        else:
            failures += 1
            if failures == 2:
                break
    left = [model for model, losses in scored if not clearly_worse(losses, best_losses)]
    return ImputationAverage([refit(model, X, tasks) for model in left])


def refit(model, X, tasks):
    """A validation fit, continued on all of X by EM (``REFIT_ITERATIONS`` at most)."""
    model.set_params(warm_start=True, max_iter=REFIT_ITERATIONS)
    with quiet_default_fit():
        tasks.fit(model, X, f"refit, {plural(model.n_components, 'component')}")
    return model.set_params(warm_start=False, max_iter=VALIDATION_ITERATIONS)


@contextmanager
def quiet_default_fit():
    """Silence what a default mixture's fit would warn about, and the user cannot act on.

    Its EM may stop at its iteration limit (``ConvergenceWarning``) with
    the imputations long settled, and a
    component held at its variance floor in some directions
    (``DegenerateComponentWarning``: the constant border pixels of one
    digit's cluster) is one the default chose, by its error on held-out
    values, and whose floor it set; the advice to use fewer components or
    a larger ``reg_covar`` is for a user's own model. So is the advice to
    lower ``reg_covar`` (``VarianceFloorWarning``) where hiding a feature's
    few extreme values leaves it a variance below the floor, a share of the
    standardised features' variance of 1.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        warnings.simplefilter("ignore", VarianceFloorWarning)
        yield
