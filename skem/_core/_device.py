"""Arrays on an accelerator (a GPU): the route that leaves the rows on their device.

``_namespaces`` sends an array here when it lives elsewhere than the host's
CPU and the model has device work for the method (``_device_methods``).
Every pass of a fit is a sum of a block function over blocks of rows
(``skem._core._routes``); here a model may give a pass a *device twin*, the
same block function written in the array API standard, which runs on the
device and returns its small sums to the host (``_device_function``; a twin
may return None for a block it leaves to the host). A pass without a twin
(the start's column moments, a block with NaN, the closed forms) reads each
block on the host and runs the numpy block function, so every pass works
and gives the numpy numbers; only the twins' work stays on the device. The
M-step and the factorisations run in float64 numpy on the host: O(K d^3)
against the E-step's O(N K d^2). The start's k-means (or k-means++ seeds)
runs on the device, with scikit-learn's steps and random draws
(``device_kmeans``); its first M-step reads a copy of the rows on the host.

Here: the route (``OnDevice``), what every mixture's twin does with its
log-probabilities (``MixtureDeviceTerms``: responsibilities, the bound,
weights, the statistics moved to the host) and the Gaussian mixtures' twin
(``GaussianDeviceTerms``: every covariance structure, in the statistics
format of ``skem._core._structure``). The other models' twins live beside
their maths: ``skem.decomposition._lowrank_device`` (PPCA, factor analysis),
``skem.mixture._lowrank_mixture_device`` and ``skem.mixture._bernoulli_device``.
No optional package is imported here.
"""

from contextlib import nullcontext

import numpy as np
from sklearn.utils.validation import _check_feature_names, _check_n_features

from ._blocks import add_terms, row_slices
from ._checks import (
    MAX_ABS_VALUE,
    check_fit_rows,
    check_predict_rows,
    check_rows_observed,
    check_sample_weight,
    weighted_row_mean,
)
from ._namespaces import namespace_and_device, to_host


def device_array(array, xp, device):
    """A float64 array of the host's (terms of the parameters) on ``device``."""
    return xp.asarray(np.ascontiguousarray(array, dtype=np.float64), device=device)


def statistics_to_host(statistics):
    """A twin's statistics (a dict of device arrays) as float64 numpy arrays."""
    return {name: np.array(to_host(value), dtype=np.float64) for name, value in statistics.items()}


#: Blocks on the device hold this many times the rows of the host's blocks
#: (which are sized for the CPU's caches): larger products for the device.
DEVICE_BLOCK_FACTOR = 16


def device_twin(function, X):
    """The device twin of a block function of a model (or None): see the module docstring."""
    owner = getattr(function, "__self__", None)
    make = getattr(owner, "_device_function", None)
    if make is None:
        return None
    xp, device = namespace_and_device(X)
    return make(function, xp, device)


def _has_nan(xp, block):
    return bool(xp.any(xp.isnan(block)))


class OnDevice:
    """The route of arrays on an accelerator (``skem._core._routes`` names the operations)."""

    in_memory = False
    start_on_sample = False

    def _checked(self, estimator, X, reset, fitting):
        """X checked on its device (a fit's checks, or a prediction's); on a
        failure the host's checks raise their messages."""
        xp, _ = namespace_and_device(X)
        if X.ndim == 2 and X.dtype not in (xp.float32, xp.float64):
            if xp.isdtype(X.dtype, ("integral", "bool", "real floating")):
                X = xp.astype(X, xp.float64)  # (as numpy's checks convert)
        ok = X.ndim == 2 and X.shape[0] >= (2 if reset else 1) and X.shape[1] >= 1
        ok = ok and X.dtype in (xp.float32, xp.float64)
        if ok:
            finite = xp.isinf(X) if estimator._allow_nan else ~xp.isfinite(X)
            ok = not bool(xp.any(finite))
        if ok and fitting:  # (a fit's magnitude limit)
            limit = MAX_ABS_VALUE[np.dtype("float32" if X.dtype == xp.float32 else "float64")]
            magnitude = xp.abs(X)
            if estimator._allow_nan:
                magnitude = xp.where(xp.isnan(X), xp.zeros_like(magnitude), magnitude)
            ok = ok and not bool(xp.any(magnitude > limit))
        if not ok:  # the host's messages (its checks raise)
            host = to_host(X)
            if fitting:
                check_fit_rows(estimator, host, reset)
            else:
                check_predict_rows(estimator, host)
        _check_n_features(estimator, X, reset=reset)
        _check_feature_names(estimator, X, reset=reset)
        return X

    def validate_fit(self, estimator, X, sample_weight, reset=True):
        X = self._checked(estimator, X, reset, fitting=True)
        return X, check_sample_weight(sample_weight, X.shape[0])

    def validate_predict(self, estimator, X):
        return self._checked(estimator, X, False, fitting=False)

    def _blocks(self, X, block_rows):
        return row_slices(X.shape[0], block_rows * DEVICE_BLOCK_FACTOR)

    def reduce(self, function, X, sample_weight, block_rows, within=nullcontext):
        """The sum of ``function(block, weights)`` over blocks of rows, in order:
        on the device where the model has a twin (and the block no NaN), else
        on the host."""
        with within():
            twin = device_twin(function, X)
            xp, device = namespace_and_device(X)
            weights_on_device = (
                None
                if sample_weight is None or twin is None
                else xp.asarray(sample_weight, device=device)
            )
            total = None
            for rows in self._blocks(X, block_rows):
                block = X[rows, :]
                part = None
                if twin is not None and not _has_nan(xp, block):
                    on_device = None if weights_on_device is None else weights_on_device[rows]
                    part = twin(block, on_device)
                if part is None:  # (no twin, NaN, or a block the twin leaves to the host)
                    weights = None if sample_weight is None else sample_weight[rows]
                    part = function(to_host(block), weights)
                total = add_terms(total, part)
            return total

    def map(self, function, X, block_rows, within=nullcontext):
        """``function(block)`` over blocks of rows, stacked on the host (the
        boundary moves the result to the device)."""
        with within():
            twin = device_twin(function, X)
            xp, _ = namespace_and_device(X)
            parts = []
            for rows in self._blocks(X, block_rows):
                block = X[rows, :]
                part = twin(block) if twin is not None and not _has_nan(xp, block) else None
                parts.append(function(to_host(block)) if part is None else part)
            return np.concatenate(parts)

    def take_rows(self, X, sample_weight, indices=None):
        """Rows ``indices`` of X (all if None), read on the host, and their weights."""
        if indices is None:
            return np.array(to_host(X)), sample_weight
        xp, device = namespace_and_device(X)
        rows = xp.take(X, xp.asarray(np.asarray(indices, dtype=np.int64), device=device), axis=0)
        return np.array(to_host(rows)), None if sample_weight is None else sample_weight[indices]

    def mean(self, values, sample_weight):
        """(Per-row values come back to the host: ``map``.)"""
        return weighted_row_mean(values, sample_weight)

    names_empty_rows = True

    def check_rows_observed(self, X):
        """ValueError naming the rows of X with no observed value (read on the
        host only when there are some)."""
        xp, _ = namespace_and_device(X)
        if bool(xp.any(xp.all(xp.isnan(X), axis=1))):
            check_rows_observed(to_host(X))

    def reject_empty_rows(self, X, count=None, block=None):
        check_rows_observed(to_host(X if block is None else block))

    def check_rows(self, check, X):
        """``check(X)``: a model's per-row check, given the array on its device."""
        return check(X)

    def require_memory(self, estimator, method):
        """Nothing: a pass without a device twin reads its blocks on the host."""

    def cluster_start(self, X, sample_weight, n_clusters, random_state, seeds_only):
        """The start's k-means labels (or k-means++ seed indices) computed on the
        device (``device_kmeans``), or None for the host's: rows with NaN, or a
        cluster emptied (``random_state`` then as it was)."""
        xp, _ = namespace_and_device(X)
        if bool(xp.any(xp.isnan(X))):
            return None
        state = random_state.get_state()
        labels = device_kmeans(X, sample_weight, n_clusters, random_state, seeds_only)
        if labels is None:
            random_state.set_state(state)
        return labels

    def incomplete_row_share(self, X):
        xp, _ = namespace_and_device(X)
        if not X.shape[0]:
            return 0.0
        return float(xp.sum(xp.astype(xp.any(xp.isnan(X), axis=1), xp.float64))) / X.shape[0]


ON_DEVICE = OnDevice()


# ---------------------------------------------------------------------- Gaussian mixtures


class MixtureDeviceTerms:
    """What every mixture's device twin does with its ``log_prob`` (n, K): the
    responsibilities, each row's part of the bound, the weights, and its
    ``statistics`` moved to the host (``block_terms``); ``log_density``.

    A row's part of the bound (``row_bound``): its log-density ("log_norm",
    EM), or the entropy of its responsibilities ("entropy", the variational
    mixture, whose other terms are global).
    """

    xp = None
    row_bound = "log_norm"

    def log_prob(self, block):
        """``(log p(x, z=k) (n, K) float64, rows for the statistics, reused work)``,
        or None for a block left to the host."""
        raise NotImplementedError

    def statistics(self, rows, responsibilities, reused):
        """The statistics (a dict of device arrays) of weighted responsibilities."""
        raise NotImplementedError

    def normalize(self, log_prob):
        """``(log-normaliser of each row, responsibilities)``, as ``normalize_log_rows``."""
        xp = self.xp
        row_max = xp.max(log_prob, axis=1)
        row_max = xp.where(xp.isfinite(row_max), row_max, xp.zeros_like(row_max))
        shifted = xp.exp(log_prob - row_max[:, None])
        total = xp.sum(shifted, axis=1)
        log_norm = xp.log(total) + row_max
        impossible = total == 0  # every entry -inf: no information, uniform
        shifted = xp.where(impossible[:, None], xp.ones_like(shifted), shifted)
        total = xp.where(impossible, xp.full_like(total, log_prob.shape[1]), total)
        return log_norm, shifted / total[:, None]

    def block_terms(self, block, weights=None):
        """The E-step of a block: ``(bound sum, weight sum, statistics)`` on the host."""
        xp = self.xp
        computed = self.log_prob(block)
        if computed is None:  # (a block the twin leaves to the host)
            return None
        log_prob, centered, reused = computed
        log_norm, responsibilities = self.normalize(log_prob)
        if self.row_bound == "entropy":  # -sum_k r ln r (0 ln 0 = 0)
            positive = responsibilities > 0
            safe = xp.where(positive, responsibilities, xp.ones_like(responsibilities))
            log_norm = -xp.sum(responsibilities * xp.log(safe), axis=1)
        if weights is None:
            bound, weight = xp.sum(log_norm), block.shape[0]
        else:
            weights = xp.astype(weights, xp.float64, copy=False)
            bound, weight = xp.sum(weights * log_norm), xp.sum(weights)
            responsibilities = responsibilities * weights[:, None]
        statistics = self.statistics(centered, responsibilities, reused)
        statistics["nk"] = xp.sum(responsibilities, axis=0)
        return float(bound), float(weight), statistics_to_host(statistics)

    def log_density(self, block):
        """``log p(x)`` of each row of a block, on the host (None: the host's)."""
        computed = self.log_prob(block)
        if computed is None:
            return None
        return np.array(to_host(self.normalize(computed[0])[0]))


class GaussianDeviceTerms(MixtureDeviceTerms):
    """A Gaussian mixture's E-step terms (``GaussianTerms``) on a device.

    Built once per pass from the host's terms: the centre, the covariance
    structure's factors (in the data's dtype, as the host's E-step uses
    them), the log-normalisers plus log-weights (float64).
    """

    #: Expanded squares beyond this are recomputed from the differences (as
    #: ``_Variances.EXPANSION_LIMIT`` on the host).
    EXPANSION_LIMIT = 1e6

    def __init__(self, covariance, terms, log_weights, xp, device, dtype, row_bound="log_norm"):
        def put(array, as_dtype=xp.float64):
            return xp.astype(device_array(array, xp, device), as_dtype, copy=False)

        self.xp, self.covariance, self.row_bound = xp, covariance, row_bound
        self.dtype = xp.float32 if dtype == np.float32 else xp.float64
        structure = terms.structure
        self.center = put(terms.center, self.dtype)
        self.log_offset = put(terms.log_norm + log_weights)
        if covariance.matrices and not covariance.shared:  # 'full'
            self.factor = put(structure.factor, self.dtype)
            self.offsets = put(structure.offsets, self.dtype)
        elif covariance.matrices:  # 'tied'
            self.factor = put(structure.factor, self.dtype)
            self.offsets = put(structure.offsets.T)  # (K, d), float64
        else:
            self.precisions = put(structure.precisions)
            self.linear = put(structure.linear)
            self.constant = put(structure.constant)
            self.centered_means = put(structure.centered_means)
            self.per_feature_factors = put(structure.per_feature_factors)

    def mahalanobis(self, centered):
        """``(squared distances (n, K) float64, what the statistics reuse)``."""
        xp = self.xp
        n_samples, n_features = centered.shape
        if self.covariance.matrices and not self.covariance.shared:
            whitened = centered @ self.factor - self.offsets
            stacked = xp.reshape(whitened, (n_samples, -1, n_features))
            wide = xp.astype(stacked, xp.float64, copy=False)
            return xp.sum(wide * wide, axis=2), stacked
        centered64 = xp.astype(centered, xp.float64, copy=False)
        if self.covariance.matrices:
            projected = xp.astype(centered @ self.factor, xp.float64, copy=False)
            difference = projected[:, None, :] - self.offsets[None, :, :]
            return xp.sum(difference * difference, axis=2), centered64
        squares = centered64 * centered64
        magnitude = squares @ self.precisions + self.constant
        distances = centered64 @ self.linear + magnitude
        far = xp.any(~(magnitude <= self.EXPANSION_LIMIT), axis=1)
        if bool(xp.any(far)):  # rare: from the differences, as on the host
            standardized = (centered64[:, None, :] - self.centered_means) * self.per_feature_factors
            direct = xp.sum(standardized * standardized, axis=2)
            distances = xp.where(far[:, None], direct, distances)
        return xp.where(distances > 0, distances, xp.zeros_like(distances)), squares

    def statistics(self, centered, responsibilities, reused):
        xp = self.xp
        return {
            "sum_x": xp.matrix_transpose(responsibilities)
            @ xp.astype(centered, xp.float64, copy=False),
            "second": self.second_moments(centered, responsibilities, reused),
        }

    def second_moments(self, centered, responsibilities, reused):
        """``second`` of the statistics format, from the E-step's work ``reused``."""
        xp = self.xp
        if self.covariance.matrices and not self.covariance.shared:
            roots = xp.astype(xp.sqrt(responsibilities), self.dtype)
            weighted = xp.permute_dims(reused * roots[:, :, None], (1, 0, 2))
            return xp.matmul(xp.matrix_transpose(weighted), weighted)
        if self.covariance.matrices:
            weighted = reused * xp.sqrt(xp.sum(responsibilities, axis=1))[:, None]
            return xp.matrix_transpose(weighted) @ weighted
        return xp.matrix_transpose(responsibilities) @ reused

    def log_prob(self, block):
        """``(log p(x, z=k) (n, K) float64, centred rows, reused work)``."""
        centered = block - self.center
        distances, reused = self.mahalanobis(centered)
        return -0.5 * distances + self.log_offset, centered, reused


# ---------------------------------------------------------------------- k-means


def _squared_distances(xp, centers, X, x_norms):
    """``|c - x|^2`` of each centre (row of ``centers``) to each row of X, expanded
    in scikit-learn's order (``-2 c.x + |c|^2 + |x|^2``, floored at 0)."""
    distances = -2 * (centers @ xp.matrix_transpose(X))
    distances = distances + xp.sum(centers * centers, axis=1)[:, None]
    distances = distances + x_norms[None, :]
    return xp.where(distances > 0, distances, xp.zeros_like(distances))


def _kmeans_plusplus(xp, device, X, weights, host_weights, n_clusters, random_state):
    """scikit-learn's k-means++ seeding (greedy, ``2 + ln K`` trials), its random
    draws from ``random_state`` in the same order; the rows' work on the device.

    Distances of float32 rows are computed in float64 and rounded to float32,
    as scikit-learn computes them (large norms would otherwise swallow the
    gaps between clusters and pick other seeds).
    """
    n_samples = X.shape[0]
    exact = xp.astype(X, xp.float64, copy=False)
    x_norms = xp.sum(exact * exact, axis=1)

    def distances_to(indices):
        rows = xp.take(exact, xp.asarray(indices, device=device), axis=0)
        return xp.astype(_squared_distances(xp, rows, exact, x_norms), X.dtype)

    n_trials = 2 + int(np.log(n_clusters))
    first = int(random_state.choice(n_samples, p=host_weights / host_weights.sum()))
    indices = [first]
    closest = distances_to(np.asarray([first]))[0, :]
    potential = float(xp.sum(closest * weights))
    for _ in range(1, n_clusters):
        draws = random_state.uniform(size=n_trials) * potential
        cumulative = xp.cumulative_sum(weights * closest)
        candidates = xp.searchsorted(cumulative, xp.asarray(draws, dtype=X.dtype, device=device))
        candidates = np.minimum(np.asarray(to_host(candidates), dtype=np.int64), n_samples - 1)
        distances = xp.minimum(closest[None, :], distances_to(candidates))
        potentials = distances @ weights
        best = int(xp.argmin(potentials))
        potential = float(potentials[best])
        closest = distances[best, :]
        indices.append(int(candidates[best]))
    return indices


def _lloyd_step(xp, X, weights, centers):
    """Labels of the rows by their nearest centre, the weighted means of the
    labels' rows and the weight of each (scikit-learn's Lloyd iteration)."""
    n_clusters = centers.shape[0]
    scores = xp.sum(centers * centers, axis=1)[None, :] - 2 * (X @ xp.matrix_transpose(centers))
    labels = xp.argmin(scores, axis=1)
    members = xp.astype(
        labels[:, None] == xp.arange(n_clusters, device=labels.device)[None, :], X.dtype
    )
    weight_in = weights @ members
    sums = xp.matrix_transpose(members) @ (X * weights[:, None])
    return labels, sums / weight_in[:, None], weight_in


def device_kmeans(
    X, sample_weight, n_clusters, random_state, seeds_only=False, max_iter=300, tol=1e-4
):
    """scikit-learn's ``KMeans(n_clusters, n_init=1).fit(X).labels_`` (or, with
    ``seeds_only``, the indices of ``kmeans_plusplus``) computed on X's device.

    The same random draws, in the same order, as scikit-learn's from
    ``random_state``; the same steps (the data centred, k-means++ seeds, Lloyd
    iterations to unchanged labels or a centre shift within ``tol`` times the
    mean variance, then the labels of the last centres). Returns host numpy
    labels (indices), or None where scikit-learn would relocate an emptied
    cluster (the caller then runs scikit-learn's on the host).
    """
    xp, device = namespace_and_device(X)
    dtype = np.float32 if X.dtype == xp.float32 else np.float64
    n_samples = X.shape[0]
    host_weights = (
        np.ones(n_samples, dtype=dtype) if sample_weight is None else sample_weight.astype(dtype)
    )
    weights = xp.asarray(host_weights, device=device)
    if not seeds_only:  # (KMeans centres the data; kmeans_plusplus does not)
        X = X - xp.mean(X, axis=0)
    seeds = _kmeans_plusplus(xp, device, X, weights, host_weights, n_clusters, random_state)
    if seeds_only:
        return np.asarray(seeds)
    tolerance = float(xp.mean(xp.var(X, axis=0))) * tol
    centers = xp.take(X, xp.asarray(np.asarray(seeds), device=device), axis=0)
    previous = None
    for _ in range(max_iter):
        labels, new_centers, weight_in = _lloyd_step(xp, X, weights, centers)
        if bool(xp.any(weight_in == 0)):
            return None
        shift = xp.sum((new_centers - centers) ** 2)
        centers = new_centers
        if previous is not None and bool(xp.all(labels == previous)):
            return np.asarray(to_host(labels), dtype=np.int64)
        if float(shift) <= tolerance:
            break
        previous = labels
    labels = _lloyd_step(xp, X, weights, centers)[0]
    return np.asarray(to_host(labels), dtype=np.int64)
