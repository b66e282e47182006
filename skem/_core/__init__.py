"""skem's private core: what every model is written on (see the user guide,
"Writing your own EM model", for the picture).

Layers, each importing only those above it:

1. ``_parallel`` (the thread pool), ``_linalg`` (factorisations), ``_monitor``
   (bound history, convergence, progress, callbacks);
2. ``_blocks`` (blocks of rows and their additive sums) and ``_checks`` (the
   data checks every model shares);
3. ``_routes`` (where the data are: arrays in memory or memory-mapped files,
   ``_dask`` for dask arrays and ``_device`` for arrays on an accelerator,
   each imported only when one is met), beneath ``_namespaces`` (the
   array-API boundary of every model's public methods);
4. ``_missing`` (NaN by missingness pattern: Gaussian conditioning on the
   observed coordinates) and ``_covariance`` (the covariance structures);
5. ``_em`` (``BaseEM``: the fit loop, restarts, rollback on failure,
   ``partial_fit``'s schedule, scores, sampling), and
   ``skem.mixture._base`` (``BaseMixture``: what every mixture shares).

No module here imports a model.
"""

from ._blocks import (
    CHUNK_FLOATS,
    Lazy,
    add_statistics,
    add_terms,
    data_block_rows,
    row_weights,
    sample_rows,
    weighted_sum,
)
from ._checks import check_rows_observed, empty_rows_message
from ._em import BaseEM
from ._online import ONLINE_PARAMETER_CONSTRAINTS
from ._routes import (
    check_missing,
    reduce_rows,
    route_of,
    take_rows,
    weighted_moments,
)

__all__ = [
    "CHUNK_FLOATS",
    "ONLINE_PARAMETER_CONSTRAINTS",
    "BaseEM",
    "Lazy",
    "add_statistics",
    "add_terms",
    "check_missing",
    "check_rows_observed",
    "data_block_rows",
    "empty_rows_message",
    "reduce_rows",
    "route_of",
    "row_weights",
    "sample_rows",
    "take_rows",
    "weighted_moments",
    "weighted_sum",
]
