"""Arrays of other libraries (torch, cupy, array-api-strict, ...) through the array API standard.

With scikit-learn's ``array_api_dispatch`` on, a model given such an array
answers in that array's namespace and on its device, as scikit-learn's
array-API estimators do: its fitted array attributes, its predictions and
its draws are arrays of that library there; ``score`` is a Python float.
Without the dispatch the array is converted to numpy (scikit-learn's rule),
and so are the results.

Where the work runs: the public methods of every EM model pass through
:func:`where_the_data_are`, the one boundary. It hands the method host numpy
views of its array arguments and of the estimator's fitted arrays (no copy
for arrays in the host's memory: torch and array-api-strict on the CPU,
through DLPack), runs the method, and moves what it returns, and what a fit
set, to the input's namespace and device. So every model, every route inside
(blocks on the local cores, NaN by missingness pattern, float32) and every
number is the numpy fit's: a float64 fit on torch equals the numpy fit from
the same ``random_state`` (the start's draws come from numpy's RandomState).
For data on an accelerator, a model with device work for the method
(``_device_methods``: every EM model's fit, and some scores) keeps the data
where they are: ``skem._core._device`` runs the model's device twins of its
block functions there and reads every other pass's blocks on the host.
For other methods (and the VAE) such data are copied to the host for the call.

A method other than a fit runs on a shallow copy of the model that holds
the host views, so the model's own arrays never change under another thread
(the copy's caches, such as the sampling state, are kept); a fit runs on the
model, whose arrays move to the data's namespace when it returns.

``array-api-compat`` (the optional extra ``skem[array-api]``) names the
namespace and device of an array; it is needed only when such an array is met.
"""

import threading
from functools import wraps
from itertools import chain

import numpy as np
from sklearn import config_context, get_config

#: The public methods that pass through the boundary (where a model defines them).
BOUNDARY_METHODS = (
    "fit",
    "partial_fit",
    "fit_predict",
    "predict",
    "predict_proba",
    "score_samples",
    "score",
    "bic",
    "aic",
    "sample",
    "transform",
    "inverse_transform",
    "impute",
    "get_covariance",
    "get_precision",
)

#: The methods that (re)fit: what they set moves to the input's namespace.
FIT_METHODS = frozenset({"fit", "partial_fit", "fit_predict"})

#: The methods without data: their results go where the fitted model is.
NO_DATA_METHODS = frozenset({"sample", "get_covariance", "get_precision"})

#: Whether device work (``skem._core._device``) runs also for arrays in the
#: host's memory (torch on the CPU): for tests and benchmarks of the device
#: route on a machine without an accelerator. By default such arrays are read
#: as numpy views, the faster route on a CPU.
DEVICE_WORK_ON_HOST = False

#: Estimators whose method is running inside the boundary, on this thread
#: (a method calling another, as ``score`` calls ``score_samples``, is not
#: converted twice).
_inside = threading.local()


def is_foreign(value):
    """Whether ``value`` is an array of another library than numpy that DLPack can
    read (arrays of a cluster's route have no ``__dlpack__``)."""
    return hasattr(value, "__dlpack__") and not isinstance(value, np.ndarray)


def _compat():
    try:
        import array_api_compat
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "skem needs the package array-api-compat for arrays of other libraries "
            "than numpy (torch, cupy, ...): pip install 'skem[array-api]'."
        ) from error
    return array_api_compat


def namespace_and_device(array):
    """``(namespace, device)`` of an array of another library."""
    compat = _compat()
    return compat.array_namespace(array), compat.device(array)


def to_host(array):
    """A numpy array of ``array``'s values: a view where the data are in host
    memory (DLPack), else a copy to the host."""
    if not is_foreign(array):
        return array
    if hasattr(array, "detach"):  # (a torch tensor that requires grad)
        array = array.detach()
    try:
        return np.from_dlpack(array)
    except (BufferError, RuntimeError, TypeError, ValueError):
        pass
    if hasattr(array, "get"):  # cupy
        return np.asarray(array.get())
    if hasattr(array, "cpu"):  # torch on an accelerator
        return np.from_dlpack(array.cpu())
    return np.from_dlpack(array, device="cpu")


def to_namespace(value, where):
    """``value`` (an array, or a tuple of them) moved to ``where = (xp, device)``."""
    if where is None:
        return value
    if type(value) is tuple:  # (draws and their labels)
        return tuple(to_namespace(item, where) for item in value)
    if not isinstance(value, np.ndarray):
        return value
    xp, device = where
    return xp.asarray(value, device=device)


def host_dtype(dtype):
    """The numpy dtype of an array's dtype: numpy's, or a float dtype of another library."""
    if isinstance(dtype, np.dtype):
        return dtype
    return np.dtype(np.float32 if str(dtype).endswith("float32") else np.float64)


def on_device(array):
    """Whether an array of another library lives elsewhere than the host's CPU
    (a GPU; array-api-strict's second device, which stands for one in tests)."""
    return DEVICE_WORK_ON_HOST or "cpu" not in str(namespace_and_device(array)[1]).lower()


def _same_place(first, second):
    """Whether two ``(namespace, device)`` are the same (None: numpy)."""
    if first is None or second is None:
        return first is second
    return first[0] is second[0] and first[1] == second[1]


def _describe(where):
    if where is None:
        return "numpy"
    return f"{where[0].__name__.removeprefix('array_api_compat.')} arrays on device {where[1]}"


def _place(estimator, name, data, fitted, dispatch):
    """Where the results go: the input's namespace and device with the dispatch
    on (the fitted arrays' for a method without data), else None (numpy).

    With the dispatch on, a fitted model takes data only from where it was
    fitted (scikit-learn's rule): ValueError otherwise.
    """
    if not dispatch:
        return None
    parameters = estimator._get_param_names()
    fitted = {key: value for key, value in fitted.items() if key not in parameters}
    fitted_at = namespace_and_device(next(iter(fitted.values()))) if fitted else None
    if name in NO_DATA_METHODS:  # where the model lives
        return fitted_at
    given = namespace_and_device(data) if is_foreign(data) else None
    if name in FIT_METHODS and not (name == "partial_fit" and fitted):
        return given
    was_fitted = bool(fitted) or any(
        isinstance(value, np.ndarray) and key.endswith("_") and not key.startswith("_")
        for key, value in vars(estimator).items()
    )
    if was_fitted and not _same_place(given, fitted_at):
        raise ValueError(
            f"Inputs passed to {type(estimator).__name__}.{name}() must use the same "
            "namespace and the same device as those passed to fit(): the model was "
            f"fitted on {_describe(fitted_at)}, this input is "
            f"{_describe(given)}. Move the data where the model is, or fit the model "
            "on these data."
        )
    return given


def _on_the_host(estimator, method, name, args, kwargs, dispatch):
    """``method`` run on host views of its arrays and of the estimator's; results,
    and what a fit set, moved where the data are (see ``where_the_data_are``)."""
    fitted = {key: value for key, value in vars(estimator).items() if is_foreign(value)}
    data = args[0] if args else kwargs.get("X", kwargs.get("Z"))
    where = _place(estimator, name, data, fitted, dispatch)
    # with device work for this method, the data stay where they are
    # (``skem._core._device``); everything else is read on the host
    stays = (
        where is not None
        and name in getattr(estimator, "_device_methods", ())
        and is_foreign(data)
        and on_device(data)
    )

    def host(value):
        return value if stays and value is data else to_host(value)

    views = {key: to_host(value) for key, value in fitted.items()}
    # A fit changes the model: it runs on it. Any other method runs on a
    # shallow copy holding the host views, so the model's own arrays never
    # change under another thread; what the method caches is copied back.
    fits = name in FIT_METHODS
    target = estimator if fits else object.__new__(type(estimator))
    if not fits:
        target.__dict__.update(vars(estimator))
    target.__dict__.update(views)
    active = getattr(_inside, "estimators", None)
    if active is None:
        active = _inside.estimators = set()
    active.add(id(target))
    try:
        # The host's work runs as on numpy without the dispatch (scikit-learn's
        # helpers it calls compute differently in the last bits with it on).
        with config_context(array_api_dispatch=False):
            result = method(
                target,
                *(host(value) for value in args),
                **{key: host(value) for key, value in kwargs.items()},
            )
    except BaseException:
        if fits:  # (the fit restored the model as it was, with the views)
            _restore(estimator, views, fitted)
        raise
    finally:
        active.discard(id(target))
    if fits:
        _restore(estimator, views, fitted)
        parameters = estimator._get_param_names()  # (a parameter stays as given)
        for key, value in list(vars(estimator).items()):
            if where is not None and isinstance(value, np.ndarray) and key not in parameters:
                estimator.__dict__[key] = to_namespace(value, where)
    else:
        for key, value in vars(target).items():  # (caches: sampling state, terms)
            if not (key in views and value is views[key]) and vars(estimator).get(key) is not value:
                estimator.__dict__[key] = value
    return to_namespace(result, where)


def _restore(estimator, views, originals):
    """Put back the original arrays where the host views still stand."""
    for key, view in views.items():
        if vars(estimator).get(key) is view:
            estimator.__dict__[key] = originals[key]


def where_the_data_are(method):
    """The array-API boundary of a public method (see the module docstring).

    numpy in, numpy out: the method runs as written, at the cost of a look at
    its arguments and at the estimator's attributes.
    """
    name = method.__name__

    @wraps(method)
    def boundary(self, *args, **kwargs):
        active = getattr(_inside, "estimators", None)
        if active is not None and id(self) in active:
            return method(self, *args, **kwargs)
        dispatch = get_config().get("array_api_dispatch", False)
        if (
            not dispatch
            and not any(is_foreign(value) for value in chain(args, kwargs.values()))
            and not any(is_foreign(value) for value in vars(self).values())
        ):
            return method(self, *args, **kwargs)  # numpy in, numpy out
        return _on_the_host(self, method, name, args, kwargs, dispatch)

    boundary.where_the_data_are = True
    return boundary


def wrap_boundary_methods(cls):
    """Put the public methods that ``cls`` itself defines behind the boundary."""
    for name in BOUNDARY_METHODS:
        value = cls.__dict__.get(name)
        if hasattr(value, "fn") and hasattr(value, "check"):  # behind available_if
            if not getattr(value.fn, "where_the_data_are", False):
                value.fn = where_the_data_are(value.fn)
        elif callable(value) and not getattr(value, "where_the_data_are", False):
            setattr(cls, name, where_the_data_are(value))
