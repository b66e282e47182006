"""Warnings raised by skem models."""


class DegenerateComponentWarning(UserWarning):
    """A fitted component is degenerate: a variance sits at its floor.

    Raised when a component has collapsed onto duplicated rows, a constant
    feature or fewer distinct points than dimensions. The model stays valid
    and its scores finite; the warning says which components and why.
    """


class VarianceFloorWarning(UserWarning):
    """The variance floor is larger than the data's variance in some columns.

    A Gaussian mixture adds ``reg_covar`` to every variance; on columns whose
    own variance is smaller (data on a tiny scale, or a column in other units
    than the rest), the floor, not the data, sets the fitted variance there.
    """
