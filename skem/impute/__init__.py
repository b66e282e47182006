"""Imputation of missing values from fitted densities."""

from ._average import ImputationAverage
from ._imputer import EMImputer

__all__ = ["EMImputer", "ImputationAverage"]
