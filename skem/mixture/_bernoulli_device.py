"""The Bernoulli mixture on an accelerator: its E-step's device twin and its data check.

``BernoulliMixture._device_function`` (``skem._core._device``): for a block of
complete rows, ``log p(x, k) = x . log-odds_k + sum_d log(1 - p_kd) + log w_k``
and the statistics ``sum_x``, in the array API standard; the responsibilities,
the bound and the weights are ``MixtureDeviceTerms``'.
"""

import numpy as np

from .._core._device import MixtureDeviceTerms, device_array
from .._core._namespaces import namespace_and_device


class BernoulliDeviceTerms(MixtureDeviceTerms):
    """The E-step terms of a Bernoulli mixture's parameters, on a device."""

    def __init__(self, model, xp, device):
        log_odds, log_zero = model._terms()
        log_weights = model._log_weights(np.float64)
        self.xp = xp
        self.log_odds = device_array(log_odds.T, xp, device)
        # (the host's observed @ log_zero.T, every value observed)
        self.log_offset = device_array(
            np.ones(log_zero.shape[1]) @ log_zero.T + log_weights, xp, device
        )

    def log_prob(self, block):
        rows = self.xp.astype(block, self.xp.float64, copy=False)
        return rows @ self.log_odds + self.log_offset, rows, None

    def statistics(self, rows, responsibilities, reused):
        return {"sum_x": self.xp.matrix_transpose(responsibilities) @ rows}


#: ``BernoulliMixture._device_methods``: the methods that run where the data are.
DEVICE_METHODS = frozenset({"fit", "fit_predict", "predict", "predict_proba"})

#: ``BernoulliMixture._kmeans_on_device`` is False: binary rows tie in distance
#: everywhere, and the device breaks ties by its own rounding, so the k-means
#: start stays scikit-learn's, on the host (the same labels as in memory).


def device_twin(model, function, xp, device):
    """``BernoulliMixture._device_function``: the twin of the E-step
    (``_block_terms``) after the first M-step."""
    if function != model._block_terms or "_start_reference" in model.__dict__:
        return None
    return BernoulliDeviceTerms(model, xp, device).block_terms


def binary_on_device(model, X):
    """``BernoulliMixture._binary`` of an array on its device: values above
    ``binarize`` as 1 (NaN kept), or checked to be 0/1 (the host's message)."""
    xp = namespace_and_device(X)[0]
    if model.binarize is not None:
        return xp.where(xp.isnan(X), X, xp.astype(X > model.binarize, X.dtype))
    if not bool(xp.all((X == 0) | (X == 1) | xp.isnan(X))):
        model._binary(np.array([[0.5]]))  # (raises the host's ValueError)
    return X
