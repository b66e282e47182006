"""The skem command line."""

import subprocess
import sys

import numpy as np
import pytest

from skem import EMGaussianMixture, __version__
from skem.cli import main


def test_console_entry_point_runs_the_demo_and_writes_its_figures(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "skem", "demo", "--plot", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    for model in ("EMGaussianMixture", "ProbabilisticPCA", "MixtureOfPPCA", "AmortizedVAE"):
        assert model in completed.stdout
    assert completed.stdout.count("ROC AUC") == 3
    figures = sorted(path.name for path in tmp_path.glob("*.png"))
    assert len(figures) == 7 and "gaussian_mixture_hill_climbing.png" in figures
    assert all(path.stat().st_size > 10_000 for path in tmp_path.glob("*.png"))


def test_version_and_missing_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


@pytest.fixture
def iris_csv(tmp_path):
    from sklearn.datasets import load_iris

    path = tmp_path / "iris.csv"
    np.savetxt(path, load_iris().data, delimiter=",", header="a,b,c,d", comments="")
    return path


def test_fit_then_score_writes_the_models_log_densities(iris_csv, tmp_path, capsys):
    from sklearn.datasets import load_iris

    model_path, scores_path = tmp_path / "model.joblib", tmp_path / "scores.csv"
    assert main(["fit", "gmm", str(iris_csv), "--param", "n_components=3",
                 "--param", "covariance_type=diag", "--param", "random_state=0",
                 "--out", str(model_path)]) == 0
    assert "fitted EMGaussianMixture on 150 rows x 4 columns" in capsys.readouterr().out
    assert main(["score", str(model_path), str(iris_csv), "--contamination", "0.05",
                 "--out", str(scores_path)]) == 0
    written = np.genfromtxt(scores_path, delimiter=",", names=True)
    expected = EMGaussianMixture(3, covariance_type="diag", random_state=0).fit(
        load_iris().data).score_samples(load_iris().data)
    np.testing.assert_allclose(written["log_density"], expected, rtol=1e-9)
    assert written["anomaly"].sum() == np.sum(expected < np.quantile(expected, 0.05))


@pytest.mark.parametrize(
    "content, message",
    [
        ("1,2,3,4\n1,2,x,4\n", "line 2, column 3: 'x' is not a number"),
        ("1,2,3,4\n\n1,2,x,4\n", "line 3, column 3: 'x' is not a number"),
        ('"a\nb",c,d,e\n1,2,3,4\n1,2,x,4\n', "line 4, column 3: 'x' is not a number"),
        ("1,typo,3,4\n1,2,3,4\n", "line 1, column 2: 'typo' is not a number"),
        ("1,2,3,4\n1,2,3\n", "line 2: 3 fields, expected 4"),
        ("1,2,3\n4,5,6\n", "has 3 columns but the model expects 4"),
        ("", "has no rows"),
    ],
)
def test_bad_files_give_one_line_errors_and_a_non_zero_exit(content, message, iris_csv,
                                                            tmp_path, capsys):
    model_path, bad = tmp_path / "model.joblib", tmp_path / "bad.csv"
    main(["fit", "ppca", str(iris_csv), "--param", "n_components=2", "--out", str(model_path)])
    bad.write_text(content)
    capsys.readouterr()
    assert main(["score", str(model_path), str(bad)]) == 1
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["fit", "nope", "{data}", "--out", "{out}"], "unknown model 'nope'"),
        (["fit", "gmm", "{data}", "--param", "bogus=1", "--out", "{out}"], "no parameter 'bogus'"),
        (["fit", "gmm", "{data}", "--param", "n_components=500", "--out", "{out}"],
         "Expected n_samples >= n_components"),
        (["fit", "gmm", "{missing}", "--out", "{out}"], "cannot read"),
        (["score", "{data}", "{data}"], "is not a model saved by 'skem fit'"),
        (["fit", "gmm", "{data}", "--out", "{missing_dir}"], "No such file or directory"),
        (["fit", "gmm", "{nan_data}", "--out", "{out}"], "Input X contains NaN"),
    ],
)
def test_bad_commands_give_one_line_errors(arguments, message, iris_csv, tmp_path, capsys):
    paths = {"data": iris_csv, "out": tmp_path / "m.joblib", "missing": tmp_path / "none.csv",
             "missing_dir": tmp_path / "no" / "such" / "m.joblib", "nan_data": tmp_path / "n.csv"}
    paths["nan_data"].write_text("1,2\n,3\n4,5\n")
    assert main([part.format(**paths) for part in arguments]) == 1
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_rows_of_missing_values_are_kept_so_scores_line_up(tmp_path, capsys):
    train, model_path, data = tmp_path / "t.csv", tmp_path / "m.joblib", tmp_path / "d.csv"
    np.savetxt(train, np.random.RandomState(0).normal(size=(50, 2)), delimiter=",")
    assert main(["fit", "ppca", str(train), "--param", "n_components=1",
                 "--out", str(model_path)]) == 0
    data.write_text("1,2\n,\n3,4\n")
    capsys.readouterr()
    assert main(["score", str(model_path), str(data)]) == 1
    assert "entirely NaN" in capsys.readouterr().err
