"""What a covariance structure of a Gaussian mixture is: nine operations, one statistics format.

Five structures, in two families: full matrices, per component ('full') or
shared ('tied'; ``_matrices``), and variances, per component and feature
('diag'), per component ('spherical') or shared ('tied_diag'; ``_variances``).
Each is a small stateless object with the nine operations of
:class:`Covariance`; everything else (shapes, parameter counts, precisions,
sampling noise, online moments) is a function of the structure's data
(``template``, ``matrices``, ``shared``), in ``_covariance``. A new
structure is one class of at most nine methods.

Conventions:

- Rows arrive centred on the centre of the current means; ``centered_means``
  are the means about it.
- A precision factor ``U`` satisfies ``U U^T = covariance^-1``
  (upper-triangular for matrices, the inverse standard deviations for
  variances).
- The E-step terms of the parameters are one immutable object per structure
  (``terms``): the log-determinants of the factors, what the distances need,
  and, built on first use by rows with NaN, what conditioning needs.
- **One statistics format.** The statistics of a block of rows are ``nk``
  (the responsibilities' sums), ``sum_x`` (the responsibility-weighted sums
  of the centred rows) and ``second``: the weighted second moments of the
  rows about the terms' ``shift`` ('full'; the centre for the others), in
  the terms' ``basis`` (when it is not
  None, the whitening factors of the E-step: the fit loop reuses its
  whitened residuals), in the structure's shape of scatter: (K, d, d) for
  'full', (d, d) for 'tied', (K, d) for the variances. They add over blocks;
  ``covariances`` turns their sum into the maximum-likelihood covariances.
"""

from typing import Any, NamedTuple

import numpy as np

ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data. (reg_covar=0 disables "
    "the variance floor that otherwise keeps such components finite.)"
)

EPS = np.finfo(np.float64).eps


def gram(X):
    """``X.T @ X``, symmetric, with one BLAS syrk call (half the flops of a GEMM).

    numpy recognises the product of an array with its own transpose and calls
    syrk in numpy's BLAS. Calling scipy's ``dsyrk`` instead would run in
    scipy's separate OpenBLAS, whose thread pool then competes with numpy's
    between the E-step products (3x slower on 2 cores).
    """
    return X.T @ X


class StartTerms(NamedTuple):
    """The terms of the first M-step, from responsibilities (no parameters yet).

    Its statistics are taken about ``shift`` (the start's means about the
    centre, for 'full'; the centre for the others), in no basis.
    """

    shift: np.ndarray
    basis: Any = None


class Covariance:
    """A covariance structure: the nine operations a structure writes.

    Data: ``name`` (the ``covariance_type``), ``template`` (the shape of
    ``covariances_`` in "K" components and "d" features), ``matrices``
    (matrices, conditioned by missingness pattern; else variances,
    conditioned with the mask alone) and ``shared`` (one covariance for all
    components).
    """

    name = ""
    template = ()
    matrices = False
    shared = False

    def from_precisions(self, precisions, name):
        """``(precision factors, covariances)`` of the user's float64 precisions,
        checked (ValueError naming ``name`` unless positive definite)."""
        raise NotImplementedError

    def factorize(self, covariances, reg_covar, n_components):
        """``(covariances, floors, factors, repaired)``: the floor added to the
        covariances (in place), the variance each component's floor added (K,),
        the precision factors, and the components a jitter repaired (a
        singular covariance: ValueError if ``reg_covar`` is 0)."""
        raise NotImplementedError

    def degenerate(self, covariances, floors, rounding):
        """Indices of the components whose covariance before the floor is singular."""
        raise NotImplementedError

    def terms(self, centered_means, factors, floors, dtype):
        """The E-step terms of these parameters (immutable; see the module docstring)."""
        raise NotImplementedError

    def mahalanobis(self, centered, centered64, terms, workspace):
        """Squared Mahalanobis distance of each row to each component (float64).

        May add to ``workspace`` what ``second_moments`` can reuse for these rows.
        """
        raise NotImplementedError

    def conditioned(self, centered, missing, terms):
        """Marginal terms of rows with missing values: the observed block of each row.

        ``centered`` (float64) holds the rows about the centre with zeros where
        ``missing``. Returns ``(mahalanobis, log_det, conditionals)``: the
        squared Mahalanobis distance of the observed values to each component
        and the log-determinant of the precision factor of their marginal,
        both (n, K), and the conditional moments of the missing values (a
        ``skem._core._missing`` conditionals object).
        """
        raise NotImplementedError

    def second_moments(self, centered, centered64, responsibilities, terms, workspace=None):
        """``second`` of complete rows (the module docstring's format).

        ``workspace``: the E-step's for these rows, or None (a first M-step).
        """
        raise NotImplementedError

    def expected_second_moments(self, conditionals, responsibilities, terms):
        """``second`` of rows with missing values, in expectation, in the same format.

        Each missing block is filled with its conditional mean and its
        conditional covariance (less the floor) is added.
        """
        raise NotImplementedError

    def covariances(self, statistics, centered_means, nk, terms):
        """The maximum-likelihood covariances (float64, unfloored) of summed statistics.

        ``statistics`` holds ``nk``, ``sum_x`` and ``second`` summed over the
        rows; ``centered_means`` and ``nk`` (the total responsibilities,
        floored) are the M-step's means about the centre and their divisor.
        """
        raise NotImplementedError
