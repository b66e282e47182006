"""Anomaly thresholds for rows with missing values, calibrated on the model's draws.

A row's log-density covers only its observed cells, so rows with missing cells
cannot share the threshold of complete rows. Each missingness pattern gets the
contamination quantile of the model's own draws with the same cells hidden.
"""

import numpy as np

#: Model draws behind each threshold: at least this many...
MIN_DRAWS = 2000
#: ...and enough for 100 draws below the threshold, up to this many.
MAX_DRAWS = 20000
#: Patterns with a threshold of their own (the most frequent); rows with rarer
#: patterns share one threshold per number of missing cells.
MAX_PATTERNS = 20
#: Complete training rows needed to set the complete rows' threshold from them.
MIN_TRAINING_ROWS = 20


def draws_for(contamination):
    """The number of model draws behind a threshold for this contamination."""
    return int(np.clip(np.ceil(100 / contamination), MIN_DRAWS, MAX_DRAWS))


def threshold_groups(missing, n_draws, random_state):
    """Rows that share a threshold, with the cells hidden in the draws that set it.

    Yields ``(rows, hidden)``: the complete rows with nothing hidden, each of
    the ``MAX_PATTERNS`` most frequent incomplete patterns with its own
    pattern (shape ``(n_features,)``), and the rows of rarer patterns by
    number of missing cells, with the patterns of ``n_draws`` rows of the
    group drawn at random (shape ``(n_draws, n_features)``: each pattern weighs
    as often as it occurs).
    """
    patterns, inverse, counts = np.unique(missing, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    incomplete = np.flatnonzero(patterns.any(axis=1))
    frequent = incomplete[np.argsort(-counts[incomplete], kind="stable")][:MAX_PATTERNS]
    for pattern in [*np.flatnonzero(~patterns.any(axis=1)), *frequent]:
        yield np.flatnonzero(inverse == pattern), patterns[pattern]
    rare = np.isin(inverse, frequent, invert=True) & missing.any(axis=1)
    n_missing = missing.sum(axis=1)
    generator = np.random.RandomState(random_state)
    for count in np.unique(n_missing[rare]):
        rows = np.flatnonzero(rare & (n_missing == count))
        yield rows, missing[generator.choice(rows, n_draws)]


def row_thresholds(model, X, complete_scores, contamination, random_state=0):
    """Each row's anomaly threshold on ``model.score_samples``.

    A row is anomalous when its score is below its threshold: the
    ``contamination`` quantile of ``complete_scores`` (the training rows'
    scores) for complete rows, and for a row with missing cells the same
    quantile of the model's scores of its own draws with the same cells
    missing. The draws come from ``model.sample`` with ``random_state``, so
    thresholds are reproducible; a pattern's threshold does not depend on the
    other rows unless the pattern is rarer than the ``MAX_PATTERNS`` most
    frequent ones.

    Parameters
    ----------
    model : fitted skem estimator
    X : ndarray of shape (n_samples, n_features)
        The scored rows; NaN marks a missing value.
    complete_scores : ndarray
        Scores of complete training rows; when fewer than
        ``MIN_TRAINING_ROWS``, complete rows are calibrated on draws too.
    contamination : float in (0, 0.5)
    random_state : int

    Returns
    -------
    thresholds : ndarray of shape (n_samples,)
    """
    n_draws = draws_for(contamination)
    thresholds = np.empty(X.shape[0])
    for rows, hidden in threshold_groups(np.isnan(X), n_draws, random_state):
        if not hidden.any() and complete_scores.size >= MIN_TRAINING_ROWS:
            thresholds[rows] = np.quantile(complete_scores, contamination)
            continue
        # draws of their own for each threshold (shared draws would share their
        # error), seeded by the hidden cells: a pattern's threshold is the same
        # in every file
        if hidden.ndim == 1:
            seed = [random_state, *(np.flatnonzero(hidden) + 1)]
        else:  # rare patterns, by their number of missing cells
            seed = [random_state, 0, int(hidden[0].sum())]
        draws = model.sample(n_draws, random_state=np.random.RandomState(seed))[0]
        scores = model.score_samples(np.where(hidden, np.nan, np.asarray(draws, np.float64)))
        thresholds[rows] = np.quantile(scores, contamination)
    return thresholds


def training_share_below_draws(model, complete_scores, contamination, random_state=0):
    """The share of ``complete_scores`` below the model's own complete-row threshold.

    About ``contamination`` when the model describes its training rows; far
    from it when it does not, and then thresholds set on its draws (those of
    rows with missing cells) and on its training rows (complete rows) differ
    in meaning.
    """
    draws = model.sample(draws_for(contamination), random_state=np.random.RandomState(random_state))
    threshold = np.quantile(model.score_samples(draws[0]), contamination)
    return float(np.mean(complete_scores < threshold))
