"""VariationalGaussianMixture: scikit-learn's BayesianGaussianMixture on skem's core.

Mean-field variational inference (Bishop 2006, chapter 10): the E-step uses
expectations under q(theta), the M-step sets q(theta) in closed form, and the
bound adds the divergences of q(theta) from the prior to the per-row sums. The
maths is in ``_variational_maths``; the rows, chunks, weights and restarts are
the core's.
"""

from math import log, pi
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
from scipy.special import entr
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .._core import ONLINE_PARAMETER_CONSTRAINTS
from .._core._covariance import (
    COVARIANCES,
    combine_moments,
    n_parameters,
    precisions,
    row_width,
    sample_noise,
)
from .._core._em import BaseEM
from .._core._linalg import logsumexp_rows
from .._core._missing import missing_mask
from ._base import RESPONSIBILITY_FLOOR, BaseMixture, MissingWorkspace
from ._gaussian_mixture import EMGaussianMixture, start_terms
from ._variational_maths import (
    Moments,
    Posterior,
    StudentImputation,
    evidence_lower_bound,
    expected_log_gaussian_norm,
    expected_log_weights,
    expected_weights,
    normalized_moments,
    prior_type_of,
    student_log_density,
    student_observed_log_density,
    student_terms,
    weight_concentration,
    wishart_update,
)
from ._variational_priors import VariationalPriors

#: A component holds data when its expected count of rows is at least this.
EFFECTIVE_COUNT = 1.0


class VariationalTerms(NamedTuple):
    """What the E-step and the scores need of q(theta): immutable.

    ``center`` and ``means`` (about it) and ``structure`` as
    :class:`skem.EMGaussianMixture`'s terms; ``log_norm`` the constant of
    each component's expected log-density, ``log_weights`` E[ln pi_k],
    ``student`` the posterior predictive's components. The first M-step,
    from responsibilities, has only the start's centre and means.
    """

    center: np.ndarray
    means: np.ndarray
    structure: Any
    log_norm: Any = None
    log_weights: Any = None
    student: Any = None


class MissingConditionals(NamedTuple):
    """q(x_M | k) of rows with missing values: ``gaussian`` (a
    ``skem._core._missing`` conditionals object) and its ``entropy`` (n, K)."""

    gaussian: Any
    entropy: np.ndarray


class VariationalGaussianMixture(VariationalPriors, BaseMixture):
    """Gaussian mixture fitted by variational inference: scikit-learn's
    BayesianGaussianMixture, with an exact bound and a true predictive density.

    A mixture with priors on its parameters: a Dirichlet distribution, or a
    Dirichlet process (stick-breaking, truncated at ``n_components``), on the
    weights, and a Normal-Wishart on each component's mean and precision.
    Mean-field coordinate ascent (Bishop 2006, chapter 10) alternates the
    responsibilities q(Z) and the posterior q(theta); components the data do
    not need are left empty, so ``n_components`` is an upper bound on the
    number used. Same parameters, attributes and numbers as
    :class:`sklearn.mixture.BayesianGaussianMixture` (from the same start the
    parameters and ``predict_proba`` agree to about 1e-10; the one exception
    is 'tied' started by 'k-means++' or 'random_from_data', where
    scikit-learn's first update takes the uncentred scatter of every row, even
    of rows no component holds yet, so its start depends on the origin;
    skem's uses the chosen rows). In addition:

    - ``lower_bounds_`` is the exact evidence lower bound per sample in nats,
      the skem convention (scikit-learn records a total without its
      constants), and ``tol`` applies to it. Each entry is the bound of the
      iteration's responsibilities and of q(theta) after its update
      (scikit-learn's point). With ``reg_covar=0`` the update is exact and
      the bound never falls; the floor ``reg_covar`` makes the update inexact
      and the bound may then dip by about its effect.
    - ``score_samples`` is the log posterior predictive density, a mixture of
      Student-t distributions (Bishop 10.81-10.82),
      ``sum_k weights_[k] St(x | means_[k], L_k, nu_k + 1 - d)`` with
      ``L_k = (nu_k + 1 - d) beta_k / ((1 + beta_k) nu_k) precisions_[k]``,
      ``nu_k = degrees_of_freedom_`` and ``beta_k = mean_precision_``: a
      density that integrates to one. (scikit-learn's is the E-step's plug-in,
      which does not.) ``sample`` draws from this same predictive.
    - ``n_components_effective_`` counts the components holding at least one
      row's worth of responsibility. For the Dirichlet process the empty
      sticks are not necessarily the last ones: read a fit by its used
      components, ``np.flatnonzero(model.mean_precision_ -
      model.mean_precision_prior_ >= 1)`` (the expected count of rows of
      component k is ``mean_precision_[k] - mean_precision_prior_``).
    - ``fit(X, sample_weight=...)``: a weight counts rows, so integer weights
      give the fit of repeated rows, priors included (the default
      ``mean_prior`` and ``covariance_prior`` are the weighted mean and
      covariance, with ``sum(sample_weight) - 1`` degrees of freedom).
    - Missing values: NaN marks a value missing at random, for every
      covariance type, fit by exact coordinate ascent on the bound of
      q(Z, X_M) q(theta), q(Z, X_M) = q(Z) q(X_M | Z) (structured mean
      field): a row's missing values given component k get the Gaussian
      conditional of precision E[Lambda_k] given its observed ones, their
      conditional mean and covariance enter the update, and their entropy
      the bound, which never falls (with ``reg_covar=0``). The default
      ``mean_prior`` and ``covariance_prior`` are the observed values' means
      and variances, with the covariance of X filled at the column means,
      scaled to those variances. ``score_samples`` of a row with NaN is the
      predictive density of its observed values (the Student-t mixture's
      marginal), and ``impute`` fills the missing values with the
      predictive's conditional mean (or, ``sample_posterior=True``, a draw
      from its conditional, a Student-t mixture).
    - A fifth ``covariance_type``, ``'tied_diag'``: one diagonal precision
      shared by all components (updated as 'tied' is).
    - Data are processed in chunks on all cores; the E-step is one matrix
      product against all components and the M-step reuses its products
      (skem's covariance structures), and dask arrays fit exactly.

    Parameters
    ----------
    n_components : int, default=1
        Maximum number of components.
    covariance_type : {'full', 'tied', 'diag', 'spherical', 'tied_diag'}, \
            default='full'
        The structure of the precisions (see :class:`skem.EMGaussianMixture`).
    tol : float, default=1e-3
        Convergence threshold on the change of the per-sample bound, in nats.
    reg_covar : float, default=1e-6
        Non-negative floor added to the diagonal of each component's weighted
        covariance in the update (scikit-learn's).
    max_iter : int, default=100
        Maximum number of iterations per restart.
    n_init : int, default=1
        Number of restarts; the one with the highest final bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, \
            default='kmeans'
        The responsibilities the first update is made from (see
        :class:`skem.BaseMixture`).
    weight_concentration_prior_type : {'dirichlet_process', \
            'dirichlet_distribution'}, default='dirichlet_process'
        Prior on the weights: stick-breaking Beta(1, gamma) sticks, or a
        Dirichlet(gamma, ..., gamma).
    weight_concentration_prior : float, default=None
        gamma, positive; None gives ``1 / n_components``. Smaller values
        favour fewer components.
    mean_precision_prior : float, default=None
        beta_0, positive: the prior's precision of the means relative to the
        components' precision; None gives 1.
    mean_prior : array-like of shape (n_features,), default=None
        m_0; None gives the (weighted) mean of X.
    degrees_of_freedom_prior : float, default=None
        nu_0 of the Wishart prior, above ``n_features - 1``; None gives
        ``n_features``.
    covariance_prior : float or array-like, default=None
        The inverse of the Wishart prior's scale, W_0^-1: (n_features,
        n_features) for 'full' and 'tied', (n_features,) for 'diag' and
        'tied_diag', a float for 'spherical'. None gives the (weighted)
        covariance of X (``ddof=1``), its diagonal, or the mean of that.
    random_state : int, RandomState instance or None, default=None
        Controls the initialisation and seeds ``sample``.
    warm_start : bool, default=False
        Continue from the fitted q(theta) on the next ``fit``.
    verbose : int, default=0
        Verbosity of the fit loop.
    verbose_interval : int, default=10
        Iterations between progress lines.
    learning_decay, learning_offset : float, default=0.7, 10.0
        ``partial_fit`` (stochastic variational inference, Hoffman et al.
        2013) averages each batch's moments of q(Z) into running ones with
        step sizes ``(learning_offset + t) ** -learning_decay`` and sets
        q(theta) by their update scaled to ``total_samples`` rows.
    total_samples : float, default=None
        ``partial_fit``: the number of rows the stream stands for (N of
        stochastic variational inference, as scikit-learn's
        LatentDirichletAllocation's). None counts the rows seen so far
        (those of ``fit`` and of every call), so the posterior sharpens as
        data arrive. A first call on an unfitted model fits its batch as
        ``fit`` does, then (with ``total_samples`` set) scales q(theta) to
        ``total_samples`` rows, SVI's first step; its ``lower_bound_`` is the
        batch fit's.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        E[pi_k], normalised over the components.
    means_ : ndarray of shape (n_components, n_features)
        m_k, the means of q(mu_k).
    covariances_ : ndarray
        E[Lambda_k]^-1 = (nu_k W_k)^-1, in the shape of ``covariance_type``.
    precisions_ : ndarray
        E[Lambda_k] = nu_k W_k.
    precisions_cholesky_ : ndarray
        Upper-triangular ``U`` with ``U @ U.T = precisions_`` (the square
        roots for the diagonal types).
    weight_concentration_ : ndarray or tuple of two ndarrays
        Dirichlet concentrations, or the sticks' Beta parameters (a, b).
    mean_precision_ : ndarray of shape (n_components,)
        beta_k.
    degrees_of_freedom_ : ndarray of shape (n_components,) or float
        nu_k (one value for the shared types).
    weight_concentration_prior_, mean_precision_prior_, mean_prior_, \
degrees_of_freedom_prior_, covariance_prior_
        The priors used in the fit.
    n_components_effective_ : int
        Components with an expected count of rows of at least one.
    converged_ : bool
        Whether the kept restart converged.
    n_iter_ : int
        Iterations of the kept restart.
    lower_bound_ : float
        The last per-sample bound of the kept restart.
    lower_bounds_ : ndarray of shape ``(n_iter_,)``
        The per-sample bound at each iteration of the kept restart.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Feature names seen during fit, if they were all strings.

    See Also
    --------
    sklearn.mixture.BayesianGaussianMixture : the reference implementation.
    EMGaussianMixture : the maximum-likelihood mixture.

    Examples
    --------
    >>> import numpy as np
    >>> from skem import VariationalGaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [4, 2], [12, 4], [10, 7]])
    >>> vgm = VariationalGaussianMixture(n_components=2, random_state=42).fit(X)
    >>> vgm.means_.round(2)
    array([[2.47, 2.28],
           [8.5 , 4.54]])
    >>> vgm.predict([[0, 0], [9, 3]])
    array([0, 1])
    >>> vgm.n_components_effective_
    2
    >>> print(round(vgm.lower_bound_, 3))  # the ELBO per sample, in nats
    -6.2
    >>> vgm.score_samples([[0, 0]]).round(3)  # the log posterior predictive density
    array([-4.719])
    >>> vgm.impute([[11, np.nan]]).round(2)  # the predictive's conditional mean
    array([[11.  ,  5.17]])

    (scikit-learn's example stops later, at ``[[2.49, 2.29], [8.45, 4.52]]``: its
    ``tol`` applies to the total bound, skem's to the bound per sample.)
    """

    # (scikit-learn's parameters: no ``init_size``, the start reads every row in memory)
    _parameter_constraints: dict = {
        **{
            name: constraint
            for name, constraint in BaseMixture._parameter_constraints.items()
            if name != "init_size"
        },
        "covariance_type": [StrOptions(set(COVARIANCES))],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "weight_concentration_prior_type": [
            StrOptions({"dirichlet_process", "dirichlet_distribution"})
        ],
        "weight_concentration_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "mean_precision_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "mean_prior": [None, "array-like"],
        "degrees_of_freedom_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "covariance_prior": [None, "array-like", Interval(Real, 0.0, None, closed="neither")],
        **ONLINE_PARAMETER_CONSTRAINTS,
        "total_samples": [None, Interval(Real, 0.0, None, closed="neither")],
    }

    _fitted_parameters = (
        "weights_",
        "means_",
        "covariances_",
        "precisions_cholesky_",
        "weight_concentration_",
        "mean_precision_",
        "degrees_of_freedom_",
        "_covariance",
    )

    _fit_scratch = (
        *BaseMixture._fit_scratch,
        "_weight_scale",
        "_column_moments",
        "_incomplete_share",
    )

    _allow_nan = True

    _terms_from = (
        "weights_",
        "means_",
        "precisions_cholesky_",
        "weight_concentration_",
        "mean_precision_",
        "degrees_of_freedom_",
    )

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        learning_decay=0.7,
        learning_offset=10.0,
        total_samples=None,
    ):
        super().__init__(
            n_components=n_components,
            tol=tol,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.total_samples = total_samples

    # ------------------------------------------------------------------ start

    def _initialize_parameters(self, X, random_state):
        """scikit-learn's private entry point: the priors of X, then the start.

        (Its test suite calls it after ``_check_parameters(X)``.)
        """
        X, sample_weight = self._validate_fit_data(X, None)
        random_state = check_random_state(random_state)
        try:
            self._prepare_fit(X, sample_weight, random_state)
            self._initialize(X, sample_weight, random_state)
        finally:
            self._drop_fit_scratch()

    def _initialize_from_responsibilities(self, X, sample_weight, responsibilities, random_state):
        """The first update, from responsibilities: statistics about the start's means."""
        weighted = responsibilities.astype(np.float64)
        if sample_weight is not None:
            weighted *= sample_weight[:, np.newaxis]
        self._start_reference = start_terms(X, sample_weight, weighted, self._column_moments.get)
        try:
            super()._initialize_from_responsibilities(
                X, sample_weight, responsibilities, random_state
            )
        finally:
            del self._start_reference

    # ------------------------------------------------------------------ iterations

    # The statistics and the terms they are taken about are EMGaussianMixture's.
    _component_statistics = EMGaussianMixture._component_statistics
    _reference = EMGaussianMixture._reference

    #: Methods that run where the data are, for arrays on an accelerator: the
    #: E-step has a device twin (``skem._core._device``).
    _device_methods = frozenset({"fit", "fit_predict", "predict", "predict_proba"})

    def _device_function(self, function, xp, device):
        from .._core._device import GaussianDeviceTerms

        if "_start_reference" in self.__dict__ or function != self._block_terms:
            return None
        terms = self._terms()  # (the rows' part of the bound: their entropy)
        device_terms = GaussianDeviceTerms(
            self._covariance, terms, terms.log_weights, xp, device, np.float64, "entropy"
        )
        return device_terms.block_terms

    def _row_width(self):
        share = getattr(self, "_incomplete_share", 0.0)  # (as EMGaussianMixture's)
        return row_width(self._covariance, self._fitted_components(), self.n_features_in_, share)

    def _e_step(self, X):
        """The responsibilities, and each row's entropy (its part of the bound): ``-sum_k r
        ln r``, plus ``sum_k r H[q(x_M | k)]`` for a row with missing values."""
        _, posterior = super()._e_step(X)
        entropy = entr(posterior.responsibilities).sum(axis=1)
        workspace = posterior.workspace
        if isinstance(workspace, MissingWorkspace):
            incomplete = workspace.incomplete
            entropy[incomplete] += np.einsum(
                "nk,nk->n", posterior.responsibilities[incomplete], workspace.conditionals.entropy
            )
        return entropy, posterior

    def _em_iteration(self, X, sample_weight):
        """E-step, update of q(theta), then the ELBO of both, per sample."""
        entropy, weight, statistics = self._reduce(self._block_terms, X, sample_weight)
        moments = self._moments(statistics)
        self._update(moments)
        scale = self._weight_scale
        # what partial_fit continues from: the rows counted and their moments
        self._rows_counted = scale * weight
        self._fit_moments = normalized_moments(moments, self._rows_counted)
        bound = evidence_lower_bound(
            self._covariance,
            self._priors(),
            self._posterior(),
            moments,
            scale * entropy,
            self.weight_concentration_prior_type,
        )
        return bound / (scale * weight)

    def _m_step_components(self, statistics):
        self._update(self._moments(statistics))

    def _m_step(self, statistics):
        # (q(weights) is updated with the components: no maximum-likelihood weights)
        self._m_step_components(statistics)

    def _moments(self, statistics):
        """Counts, means and covariances of the summed statistics, weights as row counts."""
        sums = {name: self._weight_scale * value for name, value in statistics.items()}
        return Moments(*self._local_moments(sums))

    _local_moments = EMGaussianMixture._local_moments

    def _update(self, moments):
        """q(theta) from the moments of q(Z) (Bishop 10.58-10.63)."""
        priors = self._priors()
        prior_type = self.weight_concentration_prior_type
        self.weight_concentration_ = weight_concentration(
            moments.nk, priors.weight_concentration, prior_type
        )
        self.mean_precision_ = priors.mean_precision + moments.nk
        self.means_ = (
            priors.mean_precision * priors.mean + moments.nk[:, np.newaxis] * moments.means
        ) / self.mean_precision_[:, np.newaxis]
        self.degrees_of_freedom_, covariances = wishart_update(
            self._covariance, priors, moments, self.mean_precision_, self.reg_covar
        )
        self.covariances_, _, self.precisions_cholesky_, _ = self._covariance.factorize(
            covariances, 0.0, moments.nk.shape[0]
        )
        self._set_derived()

    def _posterior(self):
        """q(theta) as the bound reads it."""
        n_components = self.means_.shape[0]
        return Posterior(
            self.weight_concentration_,
            self.mean_precision_,
            self.means_,
            np.broadcast_to(self.degrees_of_freedom_, (n_components,)),
            self.precisions_,
            self._terms().structure.log_det,
        )

    # ------------------------------------------------------------------ online

    def _batch_moments(self, X, sample_weight):
        """A batch's moments of q(Z) at the current q(theta), per row, and its bound.

        The bound is the ELBO per sample of the batch taken as the whole data
        (its moments and entropy scaled to the N of ``total_samples``), at
        q(theta) before the step: a noisy progress signal.
        """
        entropy, weight, statistics = self._reduce(self._block_terms, X, sample_weight)
        count = self._weight_scale * weight
        self._rows_counted = getattr(self, "_rows_counted", 0.0) + count
        moments = self._moments(statistics)
        total = self._stream_size()
        scaled = Moments(moments.nk * (total / count), moments.means, moments.scatter)
        bound = evidence_lower_bound(
            self._covariance,
            self._priors(),
            self._posterior(),
            scaled,
            self._weight_scale * entropy * (total / count),
            self.weight_concentration_prior_type,
        )
        return bound / total, normalized_moments(moments, count)

    def _combine_moments(self, running, batch, step):
        return combine_moments(running, batch, step, self._covariance)

    def _m_step_from_moments(self, moments):
        """q(theta) of the running moments scaled to N rows (SVI's update)."""
        self._update(
            Moments(
                moments["n"] * self._stream_size() + RESPONSIBILITY_FLOOR,
                moments["means"],
                moments["covariances"],
            )
        )

    def _moments_of_parameters(self):
        return self._fit_moments

    def _stream_size(self):
        """N of stochastic variational inference (see ``total_samples``)."""
        return float(self.total_samples or self._rows_counted)

    # ------------------------------------------------------------------ terms

    def _derive_terms(self):
        """The E-step's and the predictive's terms of the public fitted attributes."""
        covariance = self._covariance
        weights = np.asarray(self.weights_, dtype=np.float64)
        means = np.asarray(self.means_, dtype=np.float64)
        factors = np.asarray(self.precisions_cholesky_, dtype=np.float64)
        n_components, n_features = means.shape
        center = (weights / weights.sum()) @ means
        shift = means - center
        structure = covariance.terms(shift, factors, np.zeros(n_components), np.float64)
        dof = np.broadcast_to(np.asarray(self.degrees_of_freedom_, float), (n_components,))
        mean_precision = np.asarray(self.mean_precision_, dtype=np.float64)
        with np.errstate(divide="ignore"):
            log_weights = np.log(weights)
        return VariationalTerms(
            center,
            shift,
            structure,
            expected_log_gaussian_norm(structure.log_det, dof, mean_precision, n_features),
            expected_log_weights(self.weight_concentration_, self.weight_concentration_prior_type),
            student_terms(log_weights, structure.log_det, dof, mean_precision, n_features),
        )

    def _log_weights(self, dtype):
        return self._reference.log_weights.astype(dtype, copy=False)

    def _distances(self, X):
        """Squared distances of the rows to the means under E[Lambda_k], and the workspace."""
        reference = self._reference
        centered = X - reference.center.astype(X.dtype)
        workspace = {"centered": centered}
        with np.errstate(over="ignore"):  # a square beyond the float range: density 0
            mahalanobis = self._covariance.mahalanobis(
                centered, centered.astype(np.float64, copy=False), reference.structure, workspace
            )
        return mahalanobis, workspace

    def _log_prob_and_workspace(self, X):
        """E_q[ln N(x | mu_k, Lambda_k^-1)] of each row and component (Bishop 10.64-10.67)."""
        mahalanobis, workspace = self._distances(X)
        mahalanobis *= -0.5
        mahalanobis += self._reference.log_norm
        return mahalanobis, workspace

    def _estimate_log_prob(self, X):
        return self._log_prob_and_workspace(X)[0]

    def _log_density(self, X):
        """The log posterior predictive density: the Student-t mixture (of the
        observed values of a row with NaN: its marginal, a Student-t mixture)."""
        missing = missing_mask(X)
        if missing is None:
            mahalanobis, _ = self._distances(X)
            return logsumexp_rows(student_log_density(self._reference.student, mahalanobis))
        log_density = np.empty(X.shape[0])
        incomplete = missing.any(axis=1)
        if not incomplete.all():
            log_density[~incomplete] = self._log_density(X[~incomplete])
        log_density[incomplete] = logsumexp_rows(
            self._imputation_terms(X[incomplete], missing[incomplete])[0]
        )
        return log_density

    # ------------------------------------------------------------------ missing values

    def _missing_log_prob(self, X, missing):
        """The E-step of rows with missing values, and q(x_M | k) (structured mean field).

        With q(Z, X_M) = q(Z) q(X_M | Z), the optimal q(x_M | k) is the
        Gaussian conditional of precision E[Lambda_k] about m_k (what
        :class:`skem.EMGaussianMixture` computes at those parameters), and
        integrating it out leaves ``ln N(x_O | m_O, E[Lambda]^-1_OO)`` plus
        the complete rows' correction ``(E ln|Lambda| - ln|E Lambda|) / 2 -
        d / (2 beta)``. The statistics then fill each missing block with its
        conditional mean and add its covariance E[Lambda_k]_MM^-1, and the
        bound adds the entropy of q(x_M | k), returned with the conditionals.
        """
        mahalanobis, log_det, conditionals = self._observed_terms(X, missing)
        reference = self._reference
        n_missing = missing.sum(axis=1)[:, np.newaxis]
        log_2pi = log(2 * pi)
        log_prob = log_det - 0.5 * mahalanobis - 0.5 * log_2pi * (X.shape[1] - n_missing)
        log_prob += reference.log_norm - reference.structure.log_det + 0.5 * X.shape[1] * log_2pi
        # H[q(x_M | k)] = d_M (1 + ln 2 pi) / 2 - ln|E[Lambda_k]_MM| / 2
        entropy = 0.5 * (1.0 + log_2pi) * n_missing + log_det - reference.structure.log_det
        return log_prob, MissingConditionals(conditionals, entropy)

    _observed_terms = EMGaussianMixture._observed_terms
    _initial_conditionals = EMGaussianMixture._initial_conditionals

    def _missing_statistics(self, conditionals, responsibilities, initial):
        if not initial:
            conditionals = conditionals.gaussian
        return EMGaussianMixture._missing_statistics(self, conditionals, responsibilities, initial)

    def _imputation_terms(self, X, missing):
        """``impute`` (and ``score_samples``) by the posterior predictive: the Student-t
        mixture's marginal on the observed values, and its conditional of the others."""
        mahalanobis, log_det, conditionals = self._observed_terms(X, missing)
        student = self._reference.student
        n_observed = X.shape[1] - missing.sum(axis=1)
        log_joint = student_observed_log_density(student, mahalanobis, log_det, n_observed)
        return log_joint, StudentImputation(conditionals, student, mahalanobis, n_observed)

    _imputation_uniforms = 2  # (the component, and the chi-square of the Student-t)

    # ------------------------------------------------------------------ results

    def _fitted_structure(self):
        return {
            **super()._fitted_structure(),
            "covariance_type": self._covariance.name,
            "weight_concentration_prior_type": prior_type_of(self.weight_concentration_),
        }

    def _set_derived(self):
        """``weights_``, ``precisions_`` and ``n_components_effective_`` of q(theta)."""
        self.weights_ = expected_weights(
            self.weight_concentration_, prior_type_of(self.weight_concentration_)
        )
        self.precisions_ = precisions(self._covariance, self.precisions_cholesky_)
        counts = np.asarray(self.mean_precision_) - self.mean_precision_prior_
        self.n_components_effective_ = int(np.count_nonzero(counts >= EFFECTIVE_COUNT))

    def _set_parameters(self, parameters):
        super()._set_parameters(parameters)
        self._set_derived()

    def _sample_components(self, labels, random_state):
        """Draws of the posterior predictive: Student-t, ``m_k + L_k^-1/2 z sqrt(dof / chi2)``."""
        student = self._terms().student
        noise = random_state.standard_normal(size=(labels.shape[0], self.means_.shape[1]))
        noise = sample_noise(self._covariance, noise, self.precisions_cholesky_, labels)
        chi2 = random_state.chisquare(student.dof[labels])
        noise *= np.sqrt(student.dof[labels] / (student.scale[labels] * chi2))[:, np.newaxis]
        return self.means_[labels] + noise

    def _n_component_parameters(self):
        n_components, n_features = self.means_.shape
        return int(n_parameters(self._covariance, n_components, n_features)) + self.means_.size

    # A Bayesian fit is compared by its bound or held-out predictive density:
    # no BIC or AIC (as scikit-learn's BayesianGaussianMixture).
    _n_parameters = BaseEM._n_parameters
