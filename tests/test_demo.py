"""The demo's numbers, as its sections return them."""

import numpy as np
import pytest

from skem import demo


@pytest.fixture(scope="module")
def mixture_result():
    return demo.gaussian_mixture()


def test_gaussian_mixture_demo_matches_sklearn_and_picks_three_components(mixture_result):
    bounds = mixture_result.lower_bounds
    assert len(bounds) > 3 and np.diff(bounds).min() >= -1e-6  # reg_covar's dip at most
    # the same k-means start as scikit-learn's GaussianMixture: the same model
    assert mixture_result.held_out == pytest.approx(mixture_result.sklearn_held_out, abs=1e-8)
    assert mixture_result.best_n_components == 3
    assert mixture_result.adjusted_rand > 0.75


def test_report_prints_the_returned_numbers(mixture_result):
    report = demo.format_report({"gaussian_mixture": mixture_result})
    assert f"{mixture_result.held_out:.4f}" in report
    assert f"-> best {mixture_result.best_n_components}" in report
    assert report.count("\n") >= len(mixture_result.lower_bounds) + 5


def test_mixture_of_ppca_demo_beats_full_covariances_on_few_rows():
    result = demo.mixture_of_ppca()
    assert result.adjusted_rand > 0.99
    assert result.held_out > result.full_held_out + 100
    assert np.diff(result.lower_bounds).min() >= -1e-9 * abs(result.lower_bounds[-1])
