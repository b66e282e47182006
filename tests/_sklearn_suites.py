"""Load one of scikit-learn's installed mixture test modules with its estimator renamed.

The module is read at test time, every whole-word occurrence of a
scikit-learn class is replaced by skem's (messages included, as a
search-and-replace would), the imports are pointed at skem, and the source
is executed as a module. Nothing of scikit-learn's test code is stored here.
"""

import re
from pathlib import Path
from types import ModuleType

import sklearn.mixture.tests

SUITE_DIRECTORY = Path(sklearn.mixture.tests.__file__).parent


def load_renamed_suite(file_name, renamed, imports):
    """``file_name`` of scikit-learn's mixture tests with ``renamed`` (old -> new
    class names) applied, then each ``imports`` (old -> new import line) replaced."""
    path = SUITE_DIRECTORY / file_name
    source = path.read_text()
    for old, new in renamed.items():
        source = re.sub(rf"\b{old}\b", new, source)
    for old, new in imports.items():
        source = source.replace(old, new)
    module = ModuleType(f"renamed_{path.stem}")
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module
