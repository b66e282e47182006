"""Warnings raised by skem models."""


class DegenerateComponentWarning(UserWarning):
    """A fitted component is degenerate: a variance sits at its floor.

    Raised when a component has collapsed onto duplicated rows, a constant
    feature or fewer distinct points than dimensions. The model stays valid
    and its scores finite; the warning says which components and why.
    """
