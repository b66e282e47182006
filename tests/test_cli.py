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
        capture_output=True,
        text=True,
        timeout=300,
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
    assert (
        main(
            [
                "fit",
                "gmm",
                str(iris_csv),
                "--param",
                "n_components=3",
                "--param",
                "covariance_type=diag",
                "--param",
                "random_state=0",
                "--out",
                str(model_path),
            ]
        )
        == 0
    )
    assert "fitted EMGaussianMixture on 150 rows x 4 columns" in capsys.readouterr().out
    assert (
        main(
            [
                "score",
                str(model_path),
                str(iris_csv),
                "--contamination",
                "0.05",
                "--out",
                str(scores_path),
            ]
        )
        == 0
    )
    written = np.genfromtxt(scores_path, delimiter=",", names=True)
    expected = (
        EMGaussianMixture(3, covariance_type="diag", random_state=0)
        .fit(load_iris().data)
        .score_samples(load_iris().data)
    )
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
def test_bad_files_give_one_line_errors_and_a_non_zero_exit(
    content, message, iris_csv, tmp_path, capsys
):
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
        (
            ["fit", "gmm", "{data}", "--param", "n_components=500", "--out", "{out}"],
            "Expected n_samples >= n_components",
        ),
        (["fit", "gmm", "{missing}", "--out", "{out}"], "cannot read"),
        (["score", "{data}", "{data}"], "is not a model saved by 'skem fit'"),
        (["fit", "gmm", "{data}", "--out", "{missing_dir}"], "No such file or directory"),
        (["fit", "gmm", "{nan_data}", "--out", "{out}"], "Columns [1] of X are entirely NaN"),
    ],
)
def test_bad_commands_give_one_line_errors(arguments, message, iris_csv, tmp_path, capsys):
    paths = {
        "data": iris_csv,
        "out": tmp_path / "m.joblib",
        "missing": tmp_path / "none.csv",
        "missing_dir": tmp_path / "no" / "such" / "m.joblib",
        "nan_data": tmp_path / "n.csv",
    }
    paths["nan_data"].write_text("1,\n2,\n4,\n")  # a column without any value
    assert main([part.format(**paths) for part in arguments]) == 1
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_rows_of_missing_values_are_kept_so_scores_line_up(tmp_path, capsys):
    train, model_path, data = tmp_path / "t.csv", tmp_path / "m.joblib", tmp_path / "d.csv"
    np.savetxt(train, np.random.RandomState(0).normal(size=(50, 2)), delimiter=",")
    assert (
        main(["fit", "ppca", str(train), "--param", "n_components=1", "--out", str(model_path)])
        == 0
    )
    data.write_text("1,2\n,\n3,4\n")
    capsys.readouterr()
    assert main(["score", str(model_path), str(data)]) == 1
    assert "entirely NaN" in capsys.readouterr().err


# ---------------------------------------------------------------- real files, real command


def skem_command(*arguments, **kwargs):
    """Run the installed ``skem`` console command."""
    return subprocess.run(
        ["skem", *map(str, arguments)], capture_output=True, text=True, timeout=300, **kwargs
    )


@pytest.fixture(scope="module")
def wine_frame():
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame.iloc[:, :5]


@pytest.fixture(scope="module")
def wine_model(wine_frame, tmp_path_factory):
    directory = tmp_path_factory.mktemp("wine")
    wine_frame.to_csv(directory / "wine.csv", index=False)
    completed = skem_command(
        "fit",
        "gmm",
        directory / "wine.csv",
        "--param",
        "n_components=3",
        "--param",
        "random_state=0",
        "--out",
        directory / "m.joblib",
    )
    assert completed.returncode == 0, completed.stderr
    return directory / "m.joblib", directory


def scores_of(completed):
    assert completed.returncode == 0, completed.stderr
    return np.array([float(line) for line in completed.stdout.splitlines()[1:]])


def test_score_matches_columns_by_name(wine_frame, wine_model):
    model_path, directory = wine_model
    reference = scores_of(skem_command("score", model_path, directory / "wine.csv"))
    wine_frame[wine_frame.columns[::-1]].to_csv(directory / "reordered.csv", index=False)
    reordered = scores_of(skem_command("score", model_path, directory / "reordered.csv"))
    np.testing.assert_allclose(reordered, reference, rtol=1e-9)
    assert reference.mean() > -30  # a sane density, not the -2.6e6 of shuffled columns
    wine_frame.iloc[:, :4].assign(extra=1.0).to_csv(directory / "renamed.csv", index=False)
    completed = skem_command("score", model_path, directory / "renamed.csv")
    assert completed.returncode == 1 and completed.stderr.count("\n") == 1
    assert (
        "missing columns ['proline']" in completed.stderr.replace(wine_frame.columns[4], "proline")
        and "unknown columns ['extra']" in completed.stderr
    )


@pytest.mark.parametrize("layout", ["excel", "gzip", "latin-1", "index"])
def test_real_world_csv_layouts_score_like_the_plain_file(layout, wine_frame, wine_model):
    model_path, directory = wine_model
    reference = scores_of(skem_command("score", model_path, directory / "wine.csv"))
    path = directory / f"{layout}.csv"
    if layout == "excel":  # BOM, ';' separators, decimal commas
        wine_frame.to_csv(path, sep=";", decimal=",", index=False, encoding="utf-8-sig")
    elif layout == "gzip":
        path = directory / "wine.csv.gz"
        wine_frame.to_csv(path, index=False, compression="gzip")
    elif layout == "latin-1":  # a header with a non-UTF-8 byte
        frame = wine_frame.rename(columns={wine_frame.columns[0]: "alcohol_é"})
        frame.to_csv(path, index=False, encoding="latin-1")
        model_path = directory / "latin.joblib"
        assert (
            skem_command(
                "fit",
                "gmm",
                path,
                "--param",
                "n_components=3",
                "--param",
                "random_state=0",
                "--out",
                model_path,
            ).returncode
            == 0
        )
    else:  # pandas' own index column
        wine_frame.to_csv(path)
    np.testing.assert_allclose(
        scores_of(skem_command("score", model_path, path)), reference, rtol=1e-9
    )


def test_a_numeric_header_is_a_header_and_no_header_forces_data(tmp_path):
    data = tmp_path / "years.csv"
    rows = np.random.RandomState(0).normal(size=(40, 3))
    np.savetxt(data, rows, delimiter=",", header="2019,2020,2021", comments="", fmt="%.6f")
    model = tmp_path / "m.joblib"
    completed = skem_command("fit", "gmm", data, "--out", model)
    assert "on 40 rows x 3 columns" in completed.stdout
    completed = skem_command("fit", "gmm", data, "--no-header", "--out", model)
    assert "on 41 rows x 3 columns" in completed.stdout


def test_score_into_a_closed_pipe_ends_quietly(wine_model):
    model_path, directory = wine_model
    completed = subprocess.run(
        f"skem score {model_path} {directory / 'wine.csv'} | head -2",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.stdout.count("\n") == 2 and completed.stderr == ""


def test_fit_help_lists_every_models_parameters_with_defaults():
    completed = skem_command("fit", "--help")
    assert "n_latent=2" in completed.stdout and "reg_covar=1e-06" in completed.stdout
    assert "hidden_layer_sizes=(128,)" in completed.stdout


def test_one_iteration_is_singular(iris_csv, tmp_path):
    completed = skem_command(
        "fit", "gmm", iris_csv, "--param", "max_iter=1", "--out", tmp_path / "m.joblib"
    )
    assert "1 iteration," in completed.stdout
    assert "warning: Best performing initialization did not converge" in completed.stderr
    assert completed.stderr.count("\n") == 1


def test_demo_plot_without_matplotlib_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; from skem.cli import main; "
        f"sys.exit(main(['demo', '--plot', {str(tmp_path)!r}]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 1
    assert 'pip install "skem[plot]"' in completed.stderr and "Traceback" not in completed.stderr


def test_terminal_progress_reports_iterations_and_the_bound(capsys):
    pytest.importorskip("sklearn.callback")
    from sklearn.datasets import load_iris

    from skem.cli import TerminalProgress

    model = EMGaussianMixture(3, random_state=0).set_callbacks(TerminalProgress(interval=0))
    model.fit(load_iris().data)
    progress = capsys.readouterr().err
    assert f"iteration {model.n_iter_}: bound {model.lower_bounds_[-1]:.4f}" in progress


@pytest.mark.parametrize(
    "content, options, expected",
    [
        ("a;b\n0.1234;1.5\n2.5;3\n", [], [[0.1234, 1.5], [2.5, 3.0]]),  # ';' with decimal points
        ("a;b\n0,5;1,5\n2,5;3\n", [], [[0.5, 1.5], [2.5, 3.0]]),  # ';' with decimal commas
        ("a\tb\n1\t2\n3\t4\n", ["--delimiter", "\\t"], [[1, 2], [3, 4]]),  # a tab, typed as \t
    ],
)
def test_delimiters_and_decimal_marks(content, options, expected, tmp_path):
    from skem.cli import build_parser, read_data

    path = tmp_path / "data.csv"
    path.write_text(content)
    args = build_parser().parse_args(["score", "m.joblib", str(path), *options])
    values, names = read_data(args, path)
    np.testing.assert_allclose(values, expected)
    assert names == ["a", "b"]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--index-col", "5"], "--index-col 5: "),
        (["--delimiter", ";;"], "--delimiter must be one character"),
    ],
)
def test_impossible_table_options_are_one_line_errors(options, message, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    completed = skem_command("fit", "gmm", path, "--out", tmp_path / "m.joblib", *options)
    assert completed.returncode == 1 and message in completed.stderr
    assert completed.stderr.count("\n") == 1
