"""Data generators for the models' own assumptions, for tests, demos and teaching."""

import numpy as np
from sklearn.utils import check_random_state


def make_low_rank_mixture(
    n_per_component=100,
    n_features=100,
    n_components=4,
    n_latent=3,
    *,
    noise=0.5,
    separation=3.0,
    random_state=None,
):
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
        X.append(
            center + latent @ loadings.T + noise * rng.normal(size=(n_per_component, n_features))
        )
        labels.append(np.full(n_per_component, k))
    return np.vstack(X), np.concatenate(labels)


def load_dequantized_digits(*, random_state=0):
    """scikit-learn's 8x8 digits with uniform noise in [0, 1) added to every pixel.

    Integer pixels have no density (a model can put infinite density on the
    grid); adding ``U[0, 1)`` noise makes them continuous, and a log-density of
    the noisy pixels is a lower bound on the discrete log-likelihood. This is
    the digits set-up of skem's tests, documentation, demo and benchmarks.

    Parameters
    ----------
    random_state : int, RandomState instance or None, default=0
        Seed of the noise.

    Returns
    -------
    X : ndarray of shape (1797, 64)
        Pixels plus noise, in [0, 17).
    y : ndarray of shape (1797,)
        The digit of each image.

    Examples
    --------
    >>> from skem.datasets import load_dequantized_digits
    >>> X, y = load_dequantized_digits()
    >>> X.shape, float(X.min()) >= 0, float(X.max()) < 17
    ((1797, 64), True, True)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    noise = check_random_state(random_state).uniform(size=digits.data.shape)
    return digits.data + noise, digits.target


def load_anomaly_split(*, random_state=0):
    """Breast-cancer tumours split for anomaly detection: benign is normal.

    A quarter of the benign tumours is held out; the test set is those plus
    every malignant tumour, which a density trained on benign ones should
    score low.

    Parameters
    ----------
    random_state : int, RandomState instance or None, default=0
        Seed of the split of the benign tumours.

    Returns
    -------
    X_train : ndarray of shape (267, 30)
        Benign tumours to train on.
    X_test : ndarray of shape (302, 30)
        Held-out benign tumours, then all malignant ones.
    is_anomaly : ndarray of shape (302,)
        1 for a malignant tumour, 0 for a benign one.

    Examples
    --------
    >>> from skem.datasets import load_anomaly_split
    >>> X_train, X_test, is_anomaly = load_anomaly_split()
    >>> X_train.shape, X_test.shape, int(is_anomaly.sum())
    ((267, 30), (302, 30), 212)
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    benign, malignant = data.data[data.target == 1], data.data[data.target == 0]
    X_train, test_benign = train_test_split(benign, random_state=random_state)
    X_test = np.vstack([test_benign, malignant])
    is_anomaly = np.r_[np.zeros(len(test_benign)), np.ones(len(malignant))]
    return X_train, X_test, is_anomaly
