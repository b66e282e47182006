"""Arrays of other libraries through the array API (``skem._core._namespaces``).

The cases are in ``_array_api_cases.py``: torch (CPU) and array-api-strict
(whose second device catches arrays made on the wrong device). scikit-learn's
dispatch needs SCIPY_ARRAY_API=1 before scipy is imported, so the one test
here runs them in a child process with it set (skipped where
array-api-compat is absent; each library's cases skip where it is absent).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).with_name("_array_api_cases.py")


def test_array_api_cases_in_a_child_process():
    pytest.importorskip("array_api_compat")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", str(CASES), "-q", "-p", "no:cacheprovider", "-x"],
        env={**os.environ, "SCIPY_ARRAY_API": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-3000:]
    assert " passed" in completed.stdout, completed.stdout[-3000:]
    print(completed.stdout.strip().splitlines()[-1])
