"""The skem command line."""

import io
import re
import subprocess
import sys

import numpy as np
import pytest

from skem import EMGaussianMixture, ProbabilisticPCA, __version__
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
        ("1,2,3,4\n1,2,x,4\n", "line 2, column 2: 'x' is not a number"),
        ("1,2,3,4\n\n1,2,x,4\n", "line 3, column 2: 'x' is not a number"),
        ('"a\nb",c,d,e\n1,2,3,4\n1,2,x,4\n', "line 4, column 2 'd': 'x' is not a number"),
        ("1,typo,3,4\n1,2,3,4\n", "line 1, column 1: 'typo' is not a number (if this line"),
        ("1,2,3,4\n1,2,3\n", "line 2: 3 fields, expected 4"),
        ("", "has no rows"),
    ],
)
def test_bad_files_give_one_line_errors_and_a_non_zero_exit(content, message, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    assert main(["fit", "gmm", str(bad), "--out", str(tmp_path / "m.joblib")]) == 1
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error


def test_a_file_without_header_is_scored_by_position(tmp_path, capsys):
    train, model_path, bad = tmp_path / "t.csv", tmp_path / "m.joblib", tmp_path / "d.csv"
    np.savetxt(train, np.random.RandomState(0).normal(size=(50, 4)), delimiter=",")
    assert (
        main(["fit", "ppca", str(train), "--param", "n_components=2", "--out", str(model_path)])
        == 0
    )
    bad.write_text("1,2,3\n4,5,6\n")
    capsys.readouterr()
    assert main(["score", str(model_path), str(bad)]) == 1
    assert "has 3 columns but the model expects 4" in capsys.readouterr().err


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
        (
            ["fit", "gmm", "{nan_data}", "--out", "{out}"],
            "column 1 has no values; leave it out with --exclude 1",
        ),
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


def test_rows_without_values_are_left_out_of_the_fit_and_scored_empty(tmp_path, capsys):
    rows = np.random.RandomState(0).normal(size=(50, 2))
    train, model_path, data = tmp_path / "t.csv", tmp_path / "m.joblib", tmp_path / "d.csv"
    np.savetxt(train, rows, delimiter=",")
    with open(train, "a") as handle:
        handle.write(",\n")
    assert (
        main(["fit", "ppca", str(train), "--param", "n_components=1", "--out", str(model_path)])
        == 0
    )
    output = capsys.readouterr()
    assert "on 50 rows x 2 columns" in output.out
    assert "note: left out 1 row without a value in the chosen columns (data row 50," in output.err
    data.write_text("1,2\n,\n3,4\n")
    assert main(["score", str(model_path), str(data), "--contamination", "0.1"]) == 0
    output = capsys.readouterr()
    lines = output.out.splitlines()
    assert lines[0] == "log_density,anomaly" and lines[2] == ","
    expected = ProbabilisticPCA(n_components=1).fit(rows).score_samples([[1, 2], [3, 4]])
    written = [float(lines[1].split(",")[0]), float(lines[3].split(",")[0])]
    np.testing.assert_allclose(written, expected, rtol=1e-9)
    assert (
        "empty fields for 1 row without a value in the model's columns (data row 1," in output.err
    )


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
    return read_scores(completed.stdout)["log_density"].to_numpy()


def read_scores(text):
    import pandas as pd

    return pd.read_csv(io.StringIO(text))


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
    assert "hidden_layer_sizes=(128, 128)" in completed.stdout


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

    from skem._commands import TerminalProgress

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
    table = read_args_table(tmp_path, content, options)
    np.testing.assert_allclose(table.values(table.choose()), expected)
    assert table.names == ["a", "b"]


def read_args_table(directory, content, options=()):
    """The Table that ``skem score`` reads from ``content`` with ``options``."""
    from skem._commands import read_data
    from skem.cli import build_parser

    path = directory / "data.csv"
    path.write_text(content)
    args = build_parser().parse_args(["score", "m.joblib", str(path), *options])
    return read_data(args, path)


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


# ---------------------------------------------------------------- the files people have


def fit_and_score(tmp_path, capsys, data, fit_options=(), score_options=()):
    """Fit a 2-component diagonal mixture on ``data`` with the CLI, then score it."""
    model_path = tmp_path / "model.joblib"
    fit = ["fit", "gmm", str(data), "--out", str(model_path), *fit_options]
    fit += ["--param", "n_components=2", "--param", "covariance_type=diag"]
    assert main([*fit, "--param", "random_state=0"]) == 0, capsys.readouterr().err
    fitted = capsys.readouterr().out
    assert main(["score", str(model_path), str(data), *score_options]) == 0
    return fitted, read_scores(capsys.readouterr().out)


def reference_scores(values):
    model = EMGaussianMixture(2, covariance_type="diag", random_state=0).fit(values)
    return model.score_samples(values)


@pytest.fixture
def states():
    import pandas as pd

    rng = np.random.RandomState(0)
    frame = pd.DataFrame(
        rng.normal(size=(60, 3)) * [100, 3, 5] + [400, 6, 15],
        columns=["violent", "murder", "poverty"],
        index=pd.Index([f"State {number}" for number in range(60)], name="state"),
    )
    return frame.round(2)


@pytest.mark.parametrize("layout", ["named index", "unnamed index", "--index-col"])
def test_text_row_labels_are_kept_and_written_before_the_scores(layout, states, tmp_path, capsys):
    path, options = tmp_path / "states.csv", []
    if layout == "named index":
        states.to_csv(path)
    elif layout == "unnamed index":
        states.rename_axis(None).to_csv(path)
    else:  # dates in the middle, not distinct words first
        frame = states.reset_index(drop=True)
        frame.insert(2, "date", [f"2020-01-{day % 28 + 1:02d}" for day in range(60)])
        frame.to_csv(path, index=False)
        options = ["--index-col", "2"]
    fitted, scores = fit_and_score(
        tmp_path, capsys, path, options, [*options, "--contamination", "0.05"]
    )
    expected = reference_scores(states.to_numpy())
    np.testing.assert_allclose(scores["log_density"], expected, rtol=1e-9)
    assert "on 60 rows x 3 columns" in fitted
    if layout == "--index-col":
        assert list(scores.columns[:1]) == ["date"] and scores["date"][31] == "2020-01-04"
        assert "(row labels: column 2 'date')" in fitted
    else:
        assert list(scores.iloc[:, 0]) == list(states.index)
        assert scores.columns[0] == ("state" if layout == "named index" else "row")
    assert scores["anomaly"].sum() == np.sum(expected < np.quantile(expected, 0.05))


@pytest.fixture
def firms(tmp_path):
    """A file with row labels, two numeric columns, a column of text, another numeric."""
    import pandas as pd

    rng = np.random.RandomState(1)
    frame = pd.DataFrame(
        {
            "id": [f"row{number}" for number in range(80)],
            "a": rng.normal(size=80).round(3),
            "b": rng.normal(size=80).round(3),
            "firm": ["General Motors", "IBM"] * 40,
            "c": rng.normal(size=80).round(3),
        }
    )
    frame.to_csv(tmp_path / "firms.csv", index=False)
    return frame, tmp_path / "firms.csv"


@pytest.mark.parametrize(
    "options",
    [
        ["--columns", "a,c"],
        ["--columns", "1,4"],
        ["--exclude", "b,firm"],
        ["--exclude", "2,3"],
        ["--columns", "a,b,c", "--exclude", "b"],
    ],
)
def test_columns_and_exclude_take_names_or_positions_counted_from_the_labels(
    options, firms, tmp_path, capsys
):
    import joblib

    frame, path = firms
    fitted, scores = fit_and_score(tmp_path, capsys, path, options)
    bundle = joblib.load(tmp_path / "model.joblib")
    assert bundle["columns"] == ["a", "c"] and "on 80 rows x 2 columns" in fitted
    values = frame[["a", "c"]].to_numpy()
    reference = EMGaussianMixture(2, covariance_type="diag", random_state=0).fit(values)
    np.testing.assert_allclose(bundle["model"].means_, reference.means_, rtol=1e-9)
    # scoring the whole file takes the model's columns by name, the rest is left out
    np.testing.assert_allclose(scores["log_density"], reference.score_samples(values), rtol=1e-9)
    assert list(scores["id"]) == list(frame["id"])


@pytest.mark.parametrize(
    "options, message",
    [
        (
            [],
            "column 3 'firm' holds text ('General Motors' on line 2); leave it out with "
            "--exclude firm",
        ),
        (["--columns", "a,d"], "--columns: {path} has no column 'd'; its columns are id, a, b"),
        (["--columns", "5"], "has no column '5'; its columns are id, a, b, firm, c (or 0 to 4)"),
        (["--columns", "id,a"], "column 0 'id' holds the row labels"),
        (["--exclude", "a,1"], "--exclude: column 1 'a' is given twice"),
        (["--columns", "b", "--exclude", "b"], "no column left to read"),
    ],
)
def test_column_options_and_text_columns_give_one_line_errors(
    options, message, firms, tmp_path, capsys
):
    _, path = firms
    assert main(["fit", "gmm", str(path), "--out", str(tmp_path / "m.joblib"), *options]) == 1
    error = capsys.readouterr().err
    assert message.format(path=path) in error and error.count("\n") == 1


def test_a_bad_field_is_located_as_the_options_count_columns(firms, tmp_path, capsys):
    frame, path = firms
    frame.astype({"b": object}).assign(b=lambda f: f["b"].where(f.index != 5, "x")).to_csv(
        path, index=False
    )
    assert main(["fit", "gmm", str(path), "--exclude", "firm", "--out", str(tmp_path / "m")]) == 1
    assert "line 7, column 2 'b': 'x' is not a number" in capsys.readouterr().err
    assert main(["fit", "gmm", str(path), "--exclude", "2,firm", "--out", str(tmp_path / "m")]) == 0


@pytest.mark.parametrize(
    "content, names, labels, values",
    [
        # no header: a first column of distinct words holds row labels
        ("Alabama,459.9,7.1\nAlaska,632.6,3.2\n", None, ["Alabama", "Alaska"], [[459.9, 7.1]]),
        # words and years above fractions: a header whose first column names the labels
        (
            "Country,1960,1961\nAruba,4.82,4.655\nAndorra,,1.24\n",
            ["Country", "1960", "1961"],
            ["Aruba", "Andorra"],
            [[4.82, 4.655]],
        ),
        # labels that look like numbers are kept as written
        ('"",a\n007,1.5\n010,2.5\n', ["Unnamed: 0", "a"], ["007", "010"], [[1.5]]),
        # quoted names lose their quotes
        ("'x'\t'y'\n1\t2.5\n3\t4\n", ["x", "y"], None, [[1, 2.5]]),
    ],
)
def test_headers_and_row_labels_are_recognised(content, names, labels, values, tmp_path):
    table = read_args_table(tmp_path, content)
    assert table.names == names
    assert (table.labels is None) if labels is None else list(table.labels) == labels
    np.testing.assert_allclose(table.values(table.choose())[: len(values)], values)


def test_an_unwritable_out_is_refused_before_any_fitting(iris_csv, tmp_path, capsys, monkeypatch):
    fits = []
    monkeypatch.setattr(EMGaussianMixture, "fit", lambda self, X: fits.append(X) or self)
    for out in (tmp_path / "no" / "such" / "m.joblib", tmp_path):
        assert main(["fit", "gmm", str(iris_csv), "--out", str(out)]) == 1
        assert f"cannot write {out}" in capsys.readouterr().err
    assert fits == [] and sorted(tmp_path.iterdir()) == [iris_csv]


def test_contamination_flags_rows_with_missing_cells_as_often_as_complete_rows(tmp_path, capsys):
    # one correlated Gaussian; 40% of the scored rows miss two cells (15 patterns)
    rng = np.random.RandomState(0)
    factor = rng.normal(size=(6, 6))
    covariance = factor @ factor.T + np.eye(6)
    train, test = (rng.multivariate_normal(np.zeros(6), covariance, size=4000) for _ in "ab")
    incomplete = rng.rand(4000) < 0.4
    for row in np.flatnonzero(incomplete):
        test[row, rng.choice(6, 2, replace=False)] = np.nan
    np.savetxt(tmp_path / "train.csv", train, delimiter=",")
    np.savetxt(tmp_path / "test.csv", test, delimiter=",")
    model = str(tmp_path / "m.joblib")
    assert main(["fit", "gmm", str(tmp_path / "train.csv"), "--out", model]) == 0
    capsys.readouterr()
    command = ["score", model, str(tmp_path / "test.csv"), "--contamination", "0.05"]
    assert main(command) == 0
    output, error = capsys.readouterr()
    assert error == ""  # the model describes its training rows: no note
    flags = read_scores(output)["anomaly"].to_numpy()
    # binomial SD of a 5% share: 0.0054 on 1600 rows, 0.0044 on 2400; the thresholds'
    # own error (2000 draws a pattern, 4000 training rows) adds about 0.003: 0.02 is
    # over 3 SD. Without calibration, 0.12% of the incomplete rows were flagged.
    assert abs(flags[incomplete].mean() - 0.05) < 0.02
    assert abs(flags[~incomplete].mean() - 0.05) < 0.02
    assert main(command) == 0 and capsys.readouterr().out == output  # reproducible


def test_flags_against_draws_of_a_model_that_misses_its_training_rows_come_with_a_note(
    tmp_path, capsys
):
    import joblib

    rng = np.random.RandomState(0)
    train = rng.normal(size=(500, 3))
    model = EMGaussianMixture(1, random_state=0).fit(3 * train)  # three times too wide
    training_scores = np.sort(model.score_samples(train))
    bundle = {"model": model, "columns": None, "training_scores": training_scores}
    joblib.dump(bundle, tmp_path / "m.joblib")
    test = rng.normal(size=(200, 3))
    test[::2, 0] = np.nan
    np.savetxt(tmp_path / "test.csv", test, delimiter=",")
    command = ["score", str(tmp_path / "m.joblib"), str(tmp_path / "test.csv")]
    assert main([*command, "--contamination", "0.05"]) == 0
    share = np.mean(training_scores < np.quantile(model.score_samples(model.sample(2000)[0]), 0.05))
    error = capsys.readouterr().err
    assert "of the training rows fall below the 0.05 quantile of EMGaussianMixture's" in error
    assert float(error.split("note: ")[1].split("%")[0]) == pytest.approx(100 * share, abs=0.5)


def test_rare_missingness_patterns_share_a_threshold_by_number_of_missing_cells():
    from skem._anomaly import MAX_PATTERNS, row_thresholds

    rng = np.random.RandomState(1)
    factor = rng.normal(size=(8, 8))
    covariance = factor @ factor.T + np.eye(8)
    train, test = (rng.multivariate_normal(np.zeros(8), covariance, size=4000) for _ in "ab")
    model = EMGaussianMixture(1, random_state=0).fit(train)
    for row in range(test.shape[0]):  # 1 to 3 missing cells: 92 patterns
        test[row, rng.choice(8, rng.randint(1, 4), replace=False)] = np.nan
    assert len(np.unique(np.isnan(test), axis=0)) > 4 * MAX_PATTERNS
    scores = model.score_samples(test)
    flags = scores < row_thresholds(model, test, np.sort(model.score_samples(train)), 0.05)
    n_missing = np.isnan(test).sum(axis=1)
    for count in (1, 2, 3):  # about 1330 rows each: binomial SD 0.006
        assert abs(flags[n_missing == count].mean() - 0.05) < 0.02


def test_degenerate_components_on_discrete_columns_are_explained(tmp_path, capsys):
    rng = np.random.RandomState(0)
    binary = np.repeat([0, 1], 100)
    values = np.column_stack([rng.normal(size=200) + 3 * binary, rng.normal(size=200), binary])
    np.savetxt(tmp_path / "d.csv", values, delimiter=",", header="x,y,smoker", comments="")
    command = ["fit", "gmm", str(tmp_path / "d.csv"), "--out", str(tmp_path / "m.joblib")]
    assert main([*command, "--param", "n_components=2", "--param", "random_state=0"]) == 0
    error = capsys.readouterr().err
    assert "DegenerateComponentWarning" not in error and "2 of 2 components are degenerate" in error
    assert re.search(
        r"note: components 0, 1 sit on a single value of column 2 'smoker' \([01], held by "
        r"100 of 200 rows; 2 distinct values\)",
        error,
    )
    assert "--exclude smoker" in error and "--param reg_covar=0.083" in error
    # more components than points collapse too, with no discrete column to blame
    np.savetxt(tmp_path / "d.csv", rng.normal(size=(6, 4)), delimiter=",")
    assert main([*command, "--param", "n_components=3", "--param", "random_state=0"]) == 0
    error = capsys.readouterr().err
    assert "components are degenerate" in error and "note:" not in error


def test_a_variance_floor_warning_names_the_files_column(tmp_path, capsys):
    import pandas as pd

    rng = np.random.RandomState(0)
    columns = {"a": rng.normal(size=100), "b": rng.normal(size=100)}
    frame = pd.DataFrame({**columns, "ppm": 1e-4 * rng.normal(size=100), "c": rng.normal(size=100)})
    frame.index = [f"r{number}" for number in range(100)]
    frame.to_csv(tmp_path / "d.csv")
    assert main(["fit", "gmm", str(tmp_path / "d.csv"), "--out", str(tmp_path / "m")]) == 0
    output = capsys.readouterr()
    assert "(row labels: column 0)" in output.out
    # the model numbers the columns of X (2); the note, the file's (3)
    variance = np.var(frame["ppm"])
    assert "(columns [2]," in output.err
    assert f"note: in the file, that is column 3 'ppm' (variance {variance:.3g})" in output.err
    assert "--exclude ppm" in output.err


@pytest.mark.parametrize(
    "name, params",
    [
        ("vgm", {"n_components": 3}),
        ("fa", {"n_components": 2}),
        ("mfa", {"n_components": 2, "n_latent": 1}),
    ],
)
def test_the_other_models_fit_and_score_from_the_command_line(name, params, tmp_path, capsys):
    """The scores written are the library's on the same file, missing cells included,
    and a floor warning of a model without ``reg_covar`` (a Heywood case) is reported."""
    import skem
    from skem._commands import MODEL_NAMES

    values = np.loadtxt(_wine_path(tmp_path), delimiter=",", skiprows=1)
    values[::7, 2] = np.nan
    path = tmp_path / "holes.csv"
    np.savetxt(path, values, delimiter=",", header=",".join("abcdefghijklm"), comments="")
    model_path = tmp_path / "model.joblib"
    options = [arg for key, value in params.items() for arg in ("--param", f"{key}={value}")]
    fit = ["fit", name, str(path), "--out", str(model_path), *options, "--param", "random_state=0"]
    assert main(fit) == 0, capsys.readouterr().err
    assert f"fitted {MODEL_NAMES[name]} on 178 rows x 13 columns" in capsys.readouterr().out
    assert main(["score", str(model_path), str(path)]) == 0
    written = read_scores(capsys.readouterr().out)["log_density"]
    expected = getattr(skem, MODEL_NAMES[name])(**params, random_state=0).fit(values)
    np.testing.assert_allclose(written, expected.score_samples(values), rtol=1e-9)


def _wine_path(tmp_path):
    from sklearn.datasets import load_wine

    path = tmp_path / "wine.csv"
    np.savetxt(path, load_wine().data, delimiter=",", header=",".join("abcdefghijklm"), comments="")
    return path


def test_a_vae_floor_warning_on_a_constant_column_is_reported_without_a_note(tmp_path, capsys):
    values = np.random.RandomState(0).randn(60, 3)
    values[:, 1] = 2.0
    path = tmp_path / "constant.csv"
    np.savetxt(path, values, delimiter=",", header="a,b,c", comments="")
    fit = ["fit", "vae", str(path), "--out", str(tmp_path / "vae.joblib")]
    assert main([*fit, "--param", "max_iter=3", "--param", "random_state=0"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "nearly constant" in err


def test_a_header_mismatch_says_what_to_do(iris_csv, tmp_path, capsys):
    """A model fitted with column names and a file without (or the reverse): the error
    says how to make them match (it suggested --no-header, which cannot; a new user)."""
    named, plain = tmp_path / "named.joblib", tmp_path / "plain.joblib"
    bare = tmp_path / "bare.csv"
    bare.write_text("\n".join(iris_csv.read_text().splitlines()[1:]) + "\n")
    assert main(["fit", "gmm", str(iris_csv), "--out", str(named)]) == 0
    assert main(["fit", "gmm", str(bare), "--out", str(plain)]) == 0
    capsys.readouterr()
    assert main(["score", str(named), str(bare)]) == 1
    err = capsys.readouterr().err
    assert "has no header row (if its first row holds column names, give --header), and" in err
    assert "matched by name (a,b,c,d): score a file whose header row names them" in err
    assert main(["score", str(plain), str(iris_csv)]) == 1
    err = capsys.readouterr().err
    assert "fitted on a file without a header row and" in err
    assert "(if that row is data, give --no-header)" in err
    assert main(["score", str(plain), str(bare)]) == 0
    # the hint follows the file: a data row taken for a header is read as data with it
    assert main(["score", str(plain), str(iris_csv), "--header"]) == 1
    assert "give --no-header" not in capsys.readouterr().err


def test_an_infinite_cell_is_named(tmp_path, capsys):
    data = tmp_path / "inf.csv"
    data.write_text("a,b,c\n1,2,1\n\n3,Infinity,1\n5,7,-1e999\n2,-inf,2\n")
    assert main(["fit", "gmm", str(data), "--out", str(tmp_path / "m.joblib")]) == 1
    err = capsys.readouterr().err
    assert "line 4, column 1 'b': 'Infinity' is infinite (3 infinite values in the" in err
    assert err.count("\n") == 1
    # a column left out is not looked at
    fit = ["fit", "gmm", str(data), "--exclude", "b,c", "--out", str(tmp_path / "m.joblib")]
    assert main(fit) == 0
