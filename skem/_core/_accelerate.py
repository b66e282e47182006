"""SQUAREM: EM accelerated by squared extrapolation, never lowering the bound.

Varadhan & Roland (2008). From parameters theta0, two EM steps give theta1 and
theta2; with r = theta1 - theta0 and v = theta2 - theta1 - r, the extrapolation
``theta' = theta0 + 2 a r + a^2 v`` with a = |r| / |v| (a = 1 is theta2, plain
EM) jumps along the path EM is taking. One EM step from theta' follows (it
also gives the bound at theta'). The safeguard: if that bound is not finite or
is below the last recorded one, theta' is dropped and EM steps from theta2
instead. The step's cap starts at 1 (plain EM), grows fourfold each time the
cap is reached and shrinks fourfold after a dropped extrapolation, as in the
authors' package (whose default tolerance lets the objective fall; here it
may not).

A model takes part by writing ``_parameter_vector()`` and
``_set_parameter_vector(vector)`` (in coordinates where any vector is valid:
logarithms of variances, say) and having an ``accelerate`` parameter.
Recorded bounds are those of EM steps from accepted parameters, so
``lower_bounds_`` never falls, and each counts as an iteration; the
convergence test (a change below ``tol``) looks at the plain EM steps only.
"""

import numpy as np

#: Growth and shrinkage of the cap on the extrapolation's step.
STEP_FACTOR = 4.0


def accelerated_restart(model, X, sample_weight, monitor, max_iter):
    """The iterations of one restart of ``model``, two EM steps and an extrapolation at a time."""
    n_iter = 0
    step_max = 1.0

    def em_step():
        try:
            bound = model._em_iteration(X, sample_weight)
        except (ValueError, np.linalg.LinAlgError):  # parameters EM cannot step from
            return -np.inf
        return bound

    def iterate():
        nonlocal n_iter
        n_iter += 1
        monitor.begin_iteration()
        return monitor.record(model._em_iteration(X, sample_weight))

    while n_iter < max_iter:
        start = model._parameter_vector()
        if iterate() or n_iter >= max_iter:
            return
        first = model._parameter_vector()
        if iterate() or n_iter >= max_iter:
            return
        second = model._parameter_vector()
        r, v = first - start, second - 2 * first + start
        scale = np.linalg.norm(v)
        step = 1.0 if scale == 0 else float(np.clip(np.linalg.norm(r) / scale, 1.0, step_max))
        n_iter += 1
        monitor.begin_iteration()
        if step > 1.0:
            model._set_parameter_vector(start + 2 * step * r + step**2 * v)
            bound = em_step()
            if np.isfinite(bound) and bound >= monitor.lower_bound:
                if step == step_max:
                    step_max *= STEP_FACTOR
                # (a jump's gain says nothing of convergence: EM's steps decide)
                if monitor.record(bound, may_converge=False):
                    return
                continue
            step_max = max(1.0, step_max / STEP_FACTOR)
            model._set_parameter_vector(second)  # the extrapolation is dropped
        elif step == step_max:
            step_max *= STEP_FACTOR
        if monitor.record(model._em_iteration(X, sample_weight)):
            return
