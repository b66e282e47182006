"""Imputation of missing values from fitted densities."""

from ._imputer import EMImputer, ImputationAverage

__all__ = ["EMImputer", "ImputationAverage"]
