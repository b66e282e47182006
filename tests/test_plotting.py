"""skem.plotting draws the models' own numbers; a clear error without matplotlib."""

import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_iris

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from skem import (  # noqa: E402
    AmortizedVAE,
    EMGaussianMixture,
    ProbabilisticPCA,
    plotting,  # noqa: E402
)
from skem._core._covariance import covariance_matrix  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    matplotlib.pyplot.close("all")


def test_lower_bounds_plot_draws_the_bound_history():
    X = load_iris().data
    model = EMGaussianMixture(3, random_state=0).fit(X)
    ax = plotting.plot_lower_bounds(model)
    assert_allclose(ax.lines[0].get_ydata(), model.lower_bounds_)
    vae = AmortizedVAE(2, max_iter=15, random_state=0).fit(X)
    ax = plotting.plot_lower_bounds(vae)
    assert_allclose(ax.lines[1].get_ydata(), vae.validation_bounds_)


def test_em_half_steps_climb_and_the_e_step_closes_the_gap():
    X = load_iris().data
    trace = plotting.em_half_steps(EMGaussianMixture(3, reg_covar=0.0, random_state=1), X, 8)
    before, bound, after = (
        trace[name]
        for name in ("log_likelihood", "bound_after_m_step", "log_likelihood_after_m_step")
    )
    assert np.all(bound >= before - 1e-12)
    assert np.all(after >= bound - 1e-12)
    assert_allclose(before[1:], after[:-1], rtol=1e-12)
    reference = EMGaussianMixture(3, reg_covar=0.0, random_state=1, max_iter=8, tol=0)
    with pytest.warns(Warning):
        reference.fit(X)
    assert_allclose(before, reference.lower_bounds_, rtol=1e-10)
    ax = plotting.plot_hill_climbing(EMGaussianMixture(3, random_state=1), X, n_iter=4)
    assert len(ax.lines) == 2


def test_ellipses_and_latent_space():
    X = load_iris().data
    model = EMGaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    ax = plotting.plot_mixture_ellipses(model, X, dimensions=(2, 3))
    assert len(ax.patches) == 2 * 3
    assert_allclose(ax.patches[0].center, model.means_[0, [2, 3]])
    ppca = ProbabilisticPCA(2).fit(X)
    ax = plotting.plot_latent_space(ppca, X, load_iris().target)
    assert_allclose(ax.collections[0].get_offsets(), ppca.transform(X))


def test_missing_matplotlib_gives_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    model = EMGaussianMixture(2, random_state=0).fit(load_iris().data)
    with pytest.raises(ImportError, match=r"pip install 'skem\[plot\]'"):
        plotting.plot_lower_bounds(model)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "tied_diag"])
def test_ellipses_follow_each_covariance_type(covariance_type):
    X = load_iris().data
    model = EMGaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    ax = plotting.plot_mixture_ellipses(model, X, dimensions=(0, 2))
    k = 1
    covariance = covariance_matrix(model._covariance, np.asarray(model.covariances_), k, 4)[
        np.ix_([0, 2], [0, 2])
    ]
    one_sigma = ax.patches[2 * k]
    assert_allclose(
        sorted([one_sigma.width, one_sigma.height]),
        sorted(2 * np.sqrt(np.linalg.eigvalsh(covariance))),
        rtol=1e-10,
    )
    assert covariance_type in ax.get_title()


def test_mixture_of_ppca_is_drawn_along_each_components_own_axis():
    from skem import MixtureOfPPCA
    from skem.datasets import make_low_rank_mixture

    X, labels = make_low_rank_mixture(60, 30, 3, 2, random_state=0)
    model = MixtureOfPPCA(3, 2, random_state=0).fit(X)
    ax = plotting.plot_latent_space(model, X, labels, components=(2, 0))
    colours = ax.collections[0].get_array()
    assert_allclose(colours, model.predict(X) % 10)
    assert "adjusted Rand index against the labels: 1.000" in ax.get_title()
    # the leading axis of a component: the top eigenvector of its W^T W
    expected = []
    for k in (2, 0):
        eigenvalues, eigenvectors = np.linalg.eigh(model.components_[k].T @ model.components_[k])
        expected.append((X - model.means_[k]) @ eigenvectors[:, -1])
    assert_allclose(
        np.abs(ax.collections[0].get_offsets()), np.abs(np.column_stack(expected)), atol=1e-9
    )
    # the rows of each drawn component stretch along its own axis, not the other's
    offsets = ax.collections[0].get_offsets()
    for column, k in enumerate((2, 0)):
        own = np.std(offsets[model.predict(X) == k], axis=0)
        assert own[column] > 3 * own[1 - column]


def test_legends_sit_beside_the_points_they_would_cover():
    X = load_iris().data
    ax = plotting.plot_latent_space(ProbabilisticPCA(2).fit(X), X, load_iris().target)
    figure = ax.figure
    figure.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1


def test_vae_bound_plot_marks_the_kept_epoch():
    X = load_iris().data
    vae = AmortizedVAE(2, max_iter=15, random_state=0).fit(X)
    ax = plotting.plot_lower_bounds(vae)
    kept = int(np.argmax(vae.validation_bounds_)) + 1
    assert_allclose(ax.lines[2].get_xdata(), [kept, kept])
    assert ax.get_xlabel() == "epoch"
    assert ax.get_legend() is not None
    mixture = EMGaussianMixture(2, random_state=0).fit(X)
    assert plotting.plot_lower_bounds(mixture).get_legend() is None  # one line, no legend
