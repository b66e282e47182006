"""Data generators for the models' own assumptions, for tests, demos and teaching."""

import numpy as np
from sklearn.utils import check_random_state


def make_low_rank_mixture(n_per_component=100, n_features=100, n_components=4, n_latent=3,
                          *, noise=0.5, separation=3.0, random_state=None):
    """Rows from a mixture of low-rank Gaussians plus isotropic noise.

    Component k draws ``center_k + W_k z + noise * e`` with
    ``center_k ~ N(0, separation^2 I)``, ``W_k`` of shape
    (n_features, n_latent) with ``N(0, 4)`` entries, and ``z``, ``e``
    standard normal: the model of :class:`skem.MixtureOfPPCA`, and of
    :class:`skem.ProbabilisticPCA` when ``n_components=1``.

    Parameters
    ----------
    n_per_component : int, default=100
        Rows drawn from each component.
    n_features : int, default=100
        Dimension of the rows.
    n_components : int, default=4
        Number of components.
    n_latent : int, default=3
        Rank of each component's loading matrix.
    noise : float, default=0.5
        Standard deviation of the isotropic noise.
    separation : float, default=3.0
        Standard deviation of the component centres.
    random_state : int, RandomState instance or None, default=None
        Seed of the draw.

    Returns
    -------
    X : ndarray of shape (n_components * n_per_component, n_features)
        The rows, grouped by component.
    labels : ndarray of shape (n_components * n_per_component,)
        The component of each row.

    Examples
    --------
    >>> from skem.datasets import make_low_rank_mixture
    >>> X, labels = make_low_rank_mixture(50, 20, 3, 2, random_state=0)
    >>> X.shape, labels[::50].tolist()
    ((150, 20), [0, 1, 2])
    """
    rng = check_random_state(random_state)
    X, labels = [], []
    for k in range(n_components):
        center = rng.normal(scale=separation, size=n_features)
        loadings = rng.normal(scale=2.0, size=(n_features, n_latent))
        latent = rng.normal(size=(n_per_component, n_latent))
        X.append(center + latent @ loadings.T
                 + noise * rng.normal(size=(n_per_component, n_features)))
        labels.append(np.full(n_per_component, k))
    return np.vstack(X), np.concatenate(labels)
