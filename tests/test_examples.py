"""Every example of the documentation gallery runs to the end."""

import runpy
from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

EXAMPLES = sorted((Path(__file__).parent.parent / "doc" / "examples").glob("plot_*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs(path):
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        matplotlib.pyplot.close("all")


def test_examples_are_found():
    assert len(EXAMPLES) >= 6
