"""
Writing your own EM model: a Poisson mixture
============================================

A mixture only describes its components; :class:`skem.BaseMixture` runs EM.
Because the statistics are weighted sums over rows, sample weights, chunking
and restarts come for free, and the bound never decreases. A model that adds
no parameters of its own needs no ``__init__``: it inherits
``n_components``, ``tol``, ``max_iter`` and the others.

skem's own tests (``tests/test_base.py``) test this very class.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import gammaln

from skem import BaseMixture
from skem.plotting import plot_lower_bounds


class PoissonMixture(BaseMixture):
    """Mixture of products of independent Poisson distributions."""

    _fitted_parameters = ("weights_", "rates_")

    def _estimate_log_prob(self, X):
        return (
            X @ np.log(self.rates_).T
            - self.rates_.sum(axis=1)
            - gammaln(X + 1).sum(axis=1)[:, None]
        )

    def _component_statistics(self, X, responsibilities):
        return {"sum_x": responsibilities.T @ X}

    def _m_step_components(self, statistics):
        self.rates_ = statistics["sum_x"] / (statistics["nk"][:, None] + 1e-10) + 1e-10

    def _sample_components(self, labels, random_state):
        return random_state.poisson(self.rates_[labels]).astype(float)

    def _n_component_parameters(self):
        return self.rates_.size


rng = np.random.RandomState(0)
true_rates = np.array([[1.0, 8.0, 3.0], [10.0, 2.0, 0.5], [4.0, 4.0, 12.0]])
labels = rng.choice(3, size=2000, p=[0.5, 0.3, 0.2])
counts = rng.poisson(true_rates[labels]).astype(float)

model = PoissonMixture(3, tol=1e-8, init_params="random", random_state=0).fit(counts)
print("fitted rates:\n", model.rates_[np.argsort(model.rates_[:, 0])].round(2))
print("BIC:", round(model.bic(counts), 1))
plot_lower_bounds(model)
plt.tight_layout()
