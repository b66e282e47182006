"""The skem command line."""

import io
import subprocess
import sys

import pytest

from skem import __version__
from skem.cli import main


def test_demo_prints_the_bound_per_iteration_and_held_out_scores():
    out = io.StringIO()
    from skem.cli import demo_gaussian_mixture

    demo_gaussian_mixture(out)
    report = out.getvalue()
    bounds = [float(line.split()[1]) for line in report.splitlines()
              if len(line.split()) == 2 and line.split()[0].isdigit()]
    assert len(bounds) > 3
    assert all(later >= earlier - 1e-6 for earlier, later in zip(bounds, bounds[1:]))
    ours, reference = [float(part.split()[0].rstrip(")"))
                       for part in report.split("held-out mean log-likelihood: ")[1]
                       .split("same start: ")]
    assert ours == pytest.approx(reference, abs=1e-4)
    assert "best 3" in report


def test_console_entry_point_runs_the_demo_and_exits_zero():
    completed = subprocess.run(
        [sys.executable, "-m", "skem", "demo"], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    assert "EMGaussianMixture" in completed.stdout


def test_version_and_missing_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
