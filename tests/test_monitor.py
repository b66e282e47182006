"""The fit monitor: restarts as named tuples, and scikit-learn's callbacks."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skem import EMGaussianMixture, ProbabilisticPCA
from skem._core._monitor import FitMonitor, Restart

try:
    import sklearn.callback  # noqa: F401
except ImportError:
    CALLBACKS = False
else:
    CALLBACKS = True
needs_callbacks = pytest.mark.skipif(not CALLBACKS, reason="callbacks need scikit-learn >= 1.9")


class Recorder:
    """A callback that records every task it sees and can stop a restart."""

    max_propagation_depth = None  # auto-propagated into nested estimators

    def __init__(self, stop_after=None):
        self.stop_after = stop_after
        self.events = []

    def setup(self, estimator, context):
        self.events.append(("setup", type(estimator).__name__))

    def teardown(self, estimator, context):
        self.events.append(("teardown", type(estimator).__name__))

    def on_fit_task_begin(self, estimator, context):
        self.events.append(("begin", type(estimator).__name__, context.task_name))

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None, X=None):
        self.events.append(("end", type(estimator).__name__, context.task_name))
        if context.task_name == "iteration":
            self.scores = getattr(self, "scores", []) + [fitted_estimator.score(X)]
            return self.stop_after is not None and len(self.scores) >= self.stop_after
        return False


@pytest.fixture(scope="module")
def iris():
    return load_iris().data


def fit_quietly(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X)


@needs_callbacks
def test_callbacks_see_restarts_and_iterations_with_a_usable_model(iris):
    recorder = Recorder()
    model = fit_quietly(
        EMGaussianMixture(3, n_init=2, max_iter=4, tol=0, random_state=0).set_callbacks(recorder),
        iris,
    )
    tasks = [event[2] for event in recorder.events if event[0] == "begin"]
    assert tasks == ["fit"] + (["restart"] + ["iteration"] * 4) * 2
    ends = [event[2] for event in recorder.events if event[0] == "end"]
    assert ends == (["iteration"] * 4 + ["restart"]) * 2 + ["fit"]
    assert recorder.events[0][0] == "setup" and recorder.events[-1][0] == "teardown"
    # the model handed to the callback after an iteration is the one after its
    # M-step: its score is the next iteration's bound (the first restart is the
    # one a single-restart fit makes)
    first_restart = fit_quietly(EMGaussianMixture(3, max_iter=4, tol=0, random_state=0), iris)
    assert_allclose(recorder.scores[:3], first_restart.lower_bounds_[1:], rtol=1e-12)
    assert model.n_iter_ == 4


@needs_callbacks
def test_a_callback_can_stop_a_restart(iris):
    recorder = Recorder(stop_after=2)
    model = fit_quietly(
        EMGaussianMixture(3, max_iter=50, tol=0, random_state=0).set_callbacks(recorder), iris
    )
    assert model.n_iter_ == 2


@needs_callbacks
def test_callbacks_propagate_through_a_pipeline(iris):
    recorder = Recorder()
    pipeline = make_pipeline(
        StandardScaler(), ProbabilisticPCA(2, solver="em", max_iter=3, tol=0, random_state=0)
    )
    fit_quietly(pipeline.set_callbacks(recorder), iris)
    seen = {event[1] for event in recorder.events if event[0] == "begin"}
    assert "ProbabilisticPCA" in seen
    iterations = [e for e in recorder.events if e[:3] == ("end", "ProbabilisticPCA", "iteration")]
    assert len(iterations) == 3


@needs_callbacks
def test_progress_bar_over_restarts_and_iterations(iris):
    pytest.importorskip("rich")
    from sklearn.callback import ProgressBar

    model = EMGaussianMixture(3, n_init=2, random_state=0).set_callbacks(ProgressBar())
    assert fit_quietly(model, iris).converged_
    assert not hasattr(model, "_monitor")


def test_restarts_are_named_tuples_and_the_best_is_kept(iris):
    model = EMGaussianMixture(3, random_state=0, n_init=3)
    monitor = FitMonitor(model, iris, None, n_init=2)
    for index, bounds in enumerate(([-3.0, -2.0], [-2.5, -1.0])):
        monitor.begin_restart(index)
        for bound in bounds:
            monitor.begin_iteration()
            monitor.record(bound)
        model.weights_ = np.array([index])
        model_parameters = {"weights_": model.weights_}
        monitor.restart_parameters = lambda p=model_parameters: p
        restart = monitor.end_restart()
        assert isinstance(restart, Restart) and restart.n_iter == 2
    assert monitor.best.lower_bound == -1.0 and monitor.best.lower_bounds == [-2.5, -1.0]
    assert not monitor.best.converged


@needs_callbacks
def test_callbacks_are_torn_down_after_a_failed_fit():
    recorder = Recorder()
    model = EMGaussianMixture(2, reg_covar=0).set_callbacks(recorder)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        model.fit([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert recorder.events[0][0] == "setup" and recorder.events[-1][0] == "teardown"
    assert not hasattr(model, "_callback_fit_ctx") and not hasattr(model, "n_iter_")
