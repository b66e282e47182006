"""The fit monitor: bound history, convergence, verbose output, timing, callbacks.

``BaseEM.fit`` creates one ``FitMonitor`` per fit and reports every restart
and iteration to it; the monitor decides when a restart stops, keeps the best
restart, prints progress and forwards the steps to scikit-learn's callbacks
(``sklearn.callback``, scikit-learn >= 1.9). ``EarlyStoppingMonitor`` adds a
validation bound and keeps the parameters of its best epoch.
"""

from time import perf_counter
from typing import NamedTuple

import numpy as np

try:  # scikit-learn >= 1.9
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # older scikit-learn: callbacks are simply unavailable

    class CallbackSupportMixin:  # noqa: D101 - a stand-in with nothing to do
        pass

    def with_callbacks(method):
        return method


class Restart(NamedTuple):
    """The outcome of one restart of the fit loop."""

    parameters: dict
    lower_bound: float
    lower_bounds: list
    n_iter: int
    converged: bool


def plural(count, noun):
    """``"1 iteration"``, ``"3 iterations"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


class FitMonitor:
    """Follows one fit: restarts, the bound of every iteration, and the best restart.

    Parameters
    ----------
    estimator : BaseEM
        The estimator being fitted (its ``tol``, ``max_iter``, ``n_init``,
        ``verbose`` and ``verbose_interval`` are read once, here).
    X, sample_weight : arrays
        The training data, passed on to the callbacks.
    n_init : int
        Number of restarts this fit makes.
    """

    def __init__(self, estimator, X, sample_weight, n_init):
        self.estimator = estimator
        self.tol = estimator.tol
        self.max_iter = estimator.max_iter
        self.n_init = n_init
        self.verbose = estimator.verbose
        self.verbose_interval = estimator.verbose_interval
        self.X = X
        self.metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        self.best = None
        self._context = None
        if getattr(estimator, "_skl_callbacks", None) or hasattr(estimator, "_parent_callback_ctx"):
            self._context = estimator._init_callback_context(max_subtasks=n_init)
            self._context.call_on_fit_task_begin(estimator=estimator, X=X, metadata=self.metadata)

    # ------------------------------------------------------------------ restarts

    def begin_restart(self, index, lower_bound=-np.inf):
        """Start restart ``index`` from a bound (``-inf`` for a fresh start)."""
        self.lower_bound = lower_bound
        self.lower_bounds = []
        self.converged = False
        self.restart_start = self.iteration_start = perf_counter()
        if self.verbose >= 1:
            print(f"Initialization {index}")
        if self._context is not None:
            self._restart_context = self._context.subcontext(
                task_name="restart", max_subtasks=self.max_iter
            )
            self._restart_context.call_on_fit_task_begin(
                estimator=self.estimator, X=self.X, metadata=self.metadata
            )

    def begin_iteration(self):
        """Called before each iteration (opens the callbacks' task)."""
        if self._context is not None:
            self._iteration_context = self._restart_context.subcontext(task_name="iteration")
            self._iteration_context.call_on_fit_task_begin(
                estimator=self.estimator, X=self.X, metadata=self.metadata
            )

    def record(self, lower_bound, may_converge=True):
        """Record an iteration's bound; return True when the restart should stop.

        ``may_converge=False``: the change is not a step of plain EM (an
        accelerated jump), so it does not count for the convergence test.
        """
        previous, self.lower_bound = self.lower_bound, lower_bound
        self.lower_bounds.append(lower_bound)
        n_iter = len(self.lower_bounds)
        self._print_iteration(n_iter, lower_bound - previous)
        stop = self.converged = may_converge and self._converged(lower_bound, previous)
        if self._context is not None:
            stop |= self._iteration_context.call_on_fit_task_end(
                estimator=self.estimator,
                X=self.X,
                metadata=self.metadata,
                reconstruction_attributes=self.estimator._get_parameters,
            )
        return stop

    def _converged(self, lower_bound, previous):
        """The change of the bound is below ``tol``."""
        return abs(lower_bound - previous) < self.tol

    def end_restart(self):
        """Close the restart, keep it if it is the best so far, and return it."""
        restart = Restart(
            parameters=self.restart_parameters(),
            lower_bound=self.lower_bound,
            lower_bounds=self.lower_bounds,
            n_iter=len(self.lower_bounds),
            converged=self.converged,
        )
        if self.verbose >= 1:
            status = "converged" if self.converged else "did not converge"
            line = f"Initialization {status}."
            if self.verbose >= 2:
                line += (
                    f" time lapse {perf_counter() - self.restart_start:.5f}s\t "
                    f"lower bound {self.lower_bound:.5f}."
                )
            print(line)
        if self._context is not None:
            self._restart_context.call_on_fit_task_end(
                estimator=self.estimator,
                X=self.X,
                metadata=self.metadata,
                reconstruction_attributes=lambda: restart.parameters,
            )
        if self.best is None or restart.lower_bound > self.best.lower_bound:
            self.best = restart
        return restart

    def restart_parameters(self):
        """The parameters a restart ends with."""
        return self.estimator._get_parameters()

    def end_fit(self):
        """Close the fit's callback task (after the best parameters are set)."""
        if self._context is not None:
            self._context.call_on_fit_task_end(
                estimator=self.estimator,
                X=self.X,
                metadata=self.metadata,
                reconstruction_attributes=self.estimator._get_parameters,
            )

    # ------------------------------------------------------------------ verbose

    def _print_iteration(self, n_iter, change):
        if self.verbose >= 1 and n_iter % self.verbose_interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            else:
                now = perf_counter()
                print(
                    f"  Iteration {n_iter}\t time lapse {now - self.iteration_start:.5f}s"
                    f"\t ll change {change:.5f}"
                )
                self.iteration_start = now


class EarlyStoppingMonitor(FitMonitor):
    """A monitor that stops on a validation bound and keeps the best epoch.

    The model reports the validation bound of each epoch with
    ``record_validation`` before the epoch's training bound is recorded. A
    restart stops after ``n_iter_no_change`` epochs without an improvement
    of more than ``tol`` of the monitored bound (the validation bound, or the
    training bound when there is none); with a validation bound the restart
    ends with the parameters of its best epoch, and its validation history
    is stored as ``validation_bounds_``.
    """

    def __init__(self, estimator, X, sample_weight, n_init, n_iter_no_change, best_parameters):
        super().__init__(estimator, X, sample_weight, n_init)
        self.n_iter_no_change = n_iter_no_change
        self._snapshot = best_parameters

    def begin_restart(self, index, lower_bound=-np.inf):
        super().begin_restart(index, lower_bound)
        self.validation_bounds = []
        self.best_monitored = -np.inf
        self.epochs_without_improvement = 0
        self.best_parameters = None

    def record_validation(self, validation_bound):
        """Record the validation bound of the epoch about to be recorded."""
        self.validation_bounds.append(validation_bound)

    def _converged(self, lower_bound, previous):
        validating = len(self.validation_bounds) == len(self.lower_bounds)
        monitored = self.validation_bounds[-1] if validating else lower_bound
        if monitored > self.best_monitored + self.tol:
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        if monitored > self.best_monitored:
            self.best_monitored = monitored
            if validating:
                self.best_parameters = self._snapshot()
        return self.epochs_without_improvement >= self.n_iter_no_change

    def restart_parameters(self):
        parameters = super().restart_parameters()
        parameters["validation_bounds_"] = np.asarray(self.validation_bounds, dtype=np.float64)
        if self.best_parameters is not None:
            parameters.update(self.best_parameters)
        return parameters
