"""Pictures of fitted skem models: bounds, EM's hill climbing, ellipses, latent spaces.

Needs matplotlib, the optional extra ``skem[plot]``.
"""

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from ._core._covariance import covariance_matrix


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "skem.plotting needs matplotlib; install it with "
            "python -m pip install 'skem[plot]' (or python -m pip install matplotlib)."
        ) from None
    return plt


def _axes(ax):
    return _pyplot().subplots()[1] if ax is None else ax


def plot_lower_bounds(model, ax=None):
    """The bound per iteration of any fitted skem model (and the validation bound).

    Parameters
    ----------
    model : fitted skem estimator
        Any model of the package; ``lower_bounds_`` is drawn, and
        ``validation_bounds_`` too where the model has one (the VAE fitted
        with early stopping: its iterations are epochs, and a dotted line
        marks the epoch whose parameters the fit keeps, the best validation
        bound).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure if None.

    Returns
    -------
    ax : matplotlib Axes
    """
    check_is_fitted(model)
    ax = _axes(ax)
    iterations = np.arange(1, len(model.lower_bounds_) + 1)
    ax.plot(iterations, model.lower_bounds_, marker=".", label="training bound")
    validation = getattr(model, "validation_bounds_", np.array([]))
    step = "iteration"
    if len(validation):
        step = "epoch"
        ax.plot(iterations, validation, marker=".", label="validation bound")
        kept = int(np.argmax(validation)) + 1
        ax.axvline(kept, color="k", linestyle=":", label=f"kept: epoch {kept}")
        ax.legend()
    ax.set_xlabel(step)
    ax.set_ylabel("mean bound per sample (nats)")
    ax.set_title(f"{type(model).__name__}: lower bound per {step}")
    return ax


def em_half_steps(mixture, X, n_iter=10):
    """Log-likelihood and bound after each half step of EM, from a mixture's start.

    The bound is ``F(q, theta) = E_q[log p(x, z | theta)] + H(q)``, per
    sample. After the E-step of iteration t, q is the exact posterior and F
    equals the log-likelihood of theta_t; after the M-step, F has risen to
    ``F(q_t, theta_{t+1})``, which the new log-likelihood exceeds until the
    next E-step closes the gap.

    Parameters
    ----------
    mixture : skem mixture estimator (unfitted)
        Its parameters set the starting point (``random_state`` included).
    X : array-like of shape (n_samples, n_features)
        Data.
    n_iter : int, default=10
        Number of EM iterations.

    Returns
    -------
    trace : dict of ndarray of shape (n_iter,)
        ``"log_likelihood"``: at theta_t (= the bound after the E-step);
        ``"bound_after_m_step"``: F(q_t, theta_{t+1});
        ``"log_likelihood_after_m_step"``: at theta_{t+1}.
    """
    model = clone(mixture).set_params(max_iter=0)
    model.fit(X)
    model.set_params(max_iter=1, warm_start=True, tol=0.0)
    trace = {"log_likelihood": [], "bound_after_m_step": [], "log_likelihood_after_m_step": []}
    for _ in range(n_iter):
        trace["log_likelihood"].append(model.score(X))
        responsibilities = model.predict_proba(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X)
        joint = model._estimate_weighted_log_prob(np.asarray(X, dtype=np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy_terms = np.where(
                responsibilities > 0, responsibilities * np.log(responsibilities), 0.0
            )
        bound = np.sum(responsibilities * joint, axis=1) - entropy_terms.sum(axis=1)
        trace["bound_after_m_step"].append(bound.mean())
        trace["log_likelihood_after_m_step"].append(model.score(X))
    return {name: np.array(values) for name, values in trace.items()}


def plot_hill_climbing(mixture, X, n_iter=8, ax=None):
    """EM as coordinate ascent: the E-step closes the gap, the M-step climbs.

    Draws the log-likelihood and the bound F after each half step of an
    actual fit (see :func:`em_half_steps`).

    Parameters
    ----------
    mixture : skem mixture estimator (unfitted)
        The model and its starting point.
    X : array-like of shape (n_samples, n_features)
        Data.
    n_iter : int, default=8
        Number of EM iterations drawn.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure if None.

    Returns
    -------
    ax : matplotlib Axes
    """
    trace = em_half_steps(mixture, X, n_iter)
    ax = _axes(ax)
    steps = np.arange(n_iter)
    half_steps = np.ravel(np.column_stack([steps, steps + 0.5]))
    bound = np.ravel(np.column_stack([trace["log_likelihood"], trace["bound_after_m_step"]]))
    likelihood = np.ravel(
        np.column_stack([trace["log_likelihood"], trace["log_likelihood_after_m_step"]])
    )
    ax.step(half_steps, likelihood, where="post", label="log-likelihood log p(X | theta)")
    ax.step(half_steps, bound, where="post", linestyle="--", label="bound F(q, theta) = ELBO")
    ax.set_xlabel("EM iteration (E-step at integers, M-step at halves)")
    ax.set_ylabel("mean per sample (nats)")
    ax.set_title("EM climbs the bound; the E-step makes it tight")
    ax.legend()
    return ax


def plot_mixture_ellipses(model, X=None, dimensions=(0, 1), ax=None):
    """2-D projections of a Gaussian mixture: one- and two-sigma ellipses per component.

    Parameters
    ----------
    model : fitted EMGaussianMixture
        Any covariance type.
    X : array-like of shape (n_samples, n_features), default=None
        Data drawn under the ellipses, coloured by predicted component.
    dimensions : pair of int, default=(0, 1)
        The two features to project on.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure if None.

    Returns
    -------
    ax : matplotlib Axes
    """
    from matplotlib.patches import Ellipse

    check_is_fitted(model)
    ax = _axes(ax)
    i, j = dimensions
    if X is not None:
        X = np.asarray(X)
        ax.scatter(
            X[:, i], X[:, j], c=model.predict(X) % 10, s=8, cmap="tab10", vmin=0, vmax=9, alpha=0.6
        )
    n_components, n_features = model.means_.shape
    covariances = np.asarray(model.covariances_, dtype=np.float64)
    for k in range(n_components):
        covariance = covariance_matrix(model._covariance, covariances, k, n_features)[
            np.ix_([i, j], [i, j])
        ]
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        angle = np.degrees(np.arctan2(eigenvectors[1, 1], eigenvectors[0, 1]))
        for radius in (1, 2):
            width, height = 2 * radius * np.sqrt(eigenvalues[::-1])
            ax.add_patch(
                Ellipse(
                    model.means_[k, [i, j]],
                    width,
                    height,
                    angle=angle,
                    fill=False,
                    color=f"C{k % 10}",
                    alpha=0.9 / radius,
                )
            )
    ax.set_xlabel(f"feature {i}")
    ax.set_ylabel(f"feature {j}")
    ax.set_title(f"{n_components} components, {model._covariance.name} covariances")
    ax.autoscale_view()
    return ax


def plot_latent_space(model, X, y=None, ax=None, components=(0, 1)):
    """The first two latent coordinates ``transform(X)`` of PPCA or a VAE.

    A mixture of PPCA has one latent space per component, so one shared
    scatter of its latent coordinates would mean nothing. For it each row
    is drawn at its coordinate along the leading axis of two components
    (``components``: the first right singular vector of each one's loadings,
    from its mean), coloured by the component it is assigned to
    (``predict``): the rows of each of the two stretch along its own axis.
    The adjusted Rand index against ``y`` is in the title when labels are
    given.

    Parameters
    ----------
    model : fitted skem estimator with ``transform``
        ProbabilisticPCA, AmortizedVAE or MixtureOfPPCA.
    X : array-like of shape (n_samples, n_features)
        Data.
    y : array-like of shape (n_samples,), default=None
        Labels used as colours (for a mixture, compared with its components).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure if None.
    components : pair of int, default=(0, 1)
        For a mixture, the two components whose leading axes are drawn.

    Returns
    -------
    ax : matplotlib Axes
    """
    ax = _axes(ax)
    if hasattr(model, "predict"):
        X = np.asarray(X, dtype=np.float64)
        return _plot_components_on_their_axes(model, X, y, components, ax)
    latent = model.transform(X)
    second = latent[:, 1] if latent.shape[1] > 1 else np.zeros(len(latent))
    points = ax.scatter(latent[:, 0], second, c=y, s=8, cmap="tab10")
    if y is not None:
        ax.legend(*points.legend_elements(), **_LEGEND_BESIDE)
    ax.set_xlabel("latent 1 (posterior mean)")
    ax.set_ylabel("latent 2 (posterior mean)")
    ax.set_title(f"{type(model).__name__}: latent space")
    return ax


#: A legend to the right of the axes, where it covers no point.
_LEGEND_BESIDE = dict(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))


def _leading_axis(loadings):
    """Unit vector of the largest variance of ``W^T W`` (rows of W: latent axes)."""
    return np.linalg.svd(loadings, full_matrices=False)[2][0]


def _plot_components_on_their_axes(model, X, y, components, ax):
    from sklearn.metrics import adjusted_rand_score

    first, second = components
    coordinates = [
        (X - model.means_[k]) @ _leading_axis(model.components_[k]) for k in (first, second)
    ]
    labels = model.predict(X)
    ax.scatter(*coordinates, c=labels % 10, s=8, cmap="tab10", vmin=0, vmax=9)
    for k in np.unique(labels)[:10]:  # one legend entry per colour
        ax.scatter([], [], color=f"C{k % 10}", s=8, label=f"component {k}")
    ax.legend(**_LEGEND_BESIDE)
    ax.set_xlabel(f"along the leading axis of component {first}")
    ax.set_ylabel(f"along the leading axis of component {second}")
    title = f"{type(model).__name__}: rows by component"
    if y is not None:
        title += f"\nadjusted Rand index against the labels: {adjusted_rand_score(y, labels):.3f}"
    ax.set_title(title)
    return ax
