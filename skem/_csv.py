"""Reading the command line's CSV files: pandas' reader, skem's one-line errors.

``read_table`` decides what the file looks like (compression, encoding,
delimiter, decimal mark, header, column of row labels) from its first lines,
unless told, and reads it with ``pandas.read_csv`` into a ``Table``.
``Table.choose`` turns ``--columns`` and ``--exclude`` into column positions,
``Table.values`` makes numbers of them; when a column holds something else,
the file is scanned again with the csv module to say which line and column is
wrong, in one line. Columns are counted from 0, in options and messages alike.
"""

import csv
import gzip
import importlib.util
import io
import re
import shlex
from itertools import islice

import numpy as np

#: Delimiters the sniffer may choose from.
DELIMITERS = ",;\t| "

INTEGER = re.compile(r"\s*[-+]?\d+\s*")
DECIMAL_COMMA = re.compile(r"\d,\d")

#: A pandas index column written by ``DataFrame.to_csv``: unnamed.
INDEX_NAMES = {"", "unnamed: 0"}
#: The name pandas gives a column without one.
UNNAMED = re.compile(r"Unnamed: \d+")

#: Fields that pandas reads as missing values (its default ``na_values``).
MISSING_FIELDS = frozenset(
    "#N/A,#N/A N/A,#NA,-1.#IND,-1.#QNAN,-NaN,-nan,1.#IND,1.#QNAN,<NA>,N/A,NA,NULL,"
    "NaN,None,n/a,nan,null".split(",")
) | {""}

#: Rows below the first that decide whether it holds column names.
SAMPLE_ROWS = 50

#: Column names listed in a message, at most.
LISTED_NAMES = 12


class TableError(ValueError):
    """A file that is not a table of numbers; the message is one line."""


def read_text(path):
    """The file's text: gzip by content, UTF-8 (with or without BOM) or Latin-1."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise TableError(f"cannot read {path}: {error.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise TableError(f"{path} is a damaged gzip file: {error}") from None
    if b"\x00" in raw[:4096]:
        raise TableError(f"{path} is not a text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # every byte is a character: never fails


def _is_number(field, decimal):
    field = field.strip()
    if decimal != ".":
        field = field.replace(decimal, ".")
    try:
        float(field)
    except ValueError:
        return False
    return True


def _is_missing(field):
    return field.strip() in MISSING_FIELDS


def _check_delimiter(delimiter):
    """One character; ``\\t`` and ``tab`` are a tab."""
    if delimiter is None:
        return None
    delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
    if len(delimiter) != 1:
        raise TableError(f"--delimiter must be one character, got {delimiter!r}")
    return delimiter


def _sniff_delimiter(sample):
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _rows(text, delimiter):
    """(line number, fields) of the non-blank rows, as the csv module reads them."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    for fields in reader:
        if fields and not (len(fields) == 1 and not fields[0].strip()):
            yield reader.line_num, fields


def _has_header(first, below, decimal):
    """Whether the first row holds column names; None when it cannot be told.

    Names: no numbers in the first row, or whole numbers (years, say) above
    fractions in the same columns. Data: numbers, and words only in columns
    that hold no numbers below (a column of text, such as row labels).
    """
    filled = {column: field.strip() for column, field in enumerate(first) if field.strip()}
    words = [column for column, field in filled.items() if not _is_number(field, decimal)]
    numbers = [column for column in filled if column not in words]
    if not numbers:
        return True
    below_columns = [
        [fields[column] for fields in below if column < len(fields)] for column in range(len(first))
    ]
    if all(INTEGER.fullmatch(filled[column]) for column in numbers) and any(
        _is_number(field, decimal) and not INTEGER.fullmatch(field)
        for column in numbers
        for field in below_columns[column]
    ):
        return True
    if all(
        not any(_is_number(field, decimal) for field in below_columns[column]) for column in words
    ):
        return False
    return None


def read_table(path, *, delimiter=None, header=None, index_col=None):
    """Read a CSV file into a ``Table`` (every column, names, row labels).

    Parameters
    ----------
    path : str or path
        The file (plain or gzip-compressed, UTF-8 or Latin-1).
    delimiter : str, default=None
        Field separator (one character; ``\\t`` or ``tab`` for a tab);
        sniffed from the first lines when None. Where fields are not separated
        by commas and commas stand between digits, they are decimal commas.
    header : bool, default=None
        Whether the first row holds column names; decided from it when None.
    index_col : int, default=None
        The column of row labels (0 is the first), kept as text. When None,
        an unnamed first column (as ``DataFrame.to_csv`` writes) or a first
        column of distinct words (names, dates) holds the row labels.

    Empty fields (and pandas' missing-value markers such as ``NA``) are
    missing values. Raises ``TableError`` with the line of the first problem.
    """
    if importlib.util.find_spec("pandas") is None:
        raise TableError('reading CSV files needs pandas: pip install pandas (or "skem[cli]")')
    text = read_text(path)
    sample = text[:65536]
    delimiter = _check_delimiter(delimiter) or _sniff_delimiter(sample)
    # a decimal comma only where fields are separated otherwise and commas sit
    # between digits (as spreadsheets write with ';')
    decimal = "," if delimiter != "," and DECIMAL_COMMA.search(sample) else "."
    head = list(islice(_rows(sample, delimiter), SAMPLE_ROWS + 1))
    if not head:
        raise TableError(f"{path} has no rows")
    first = head[0][1]
    if header is None:
        header = _has_header(first, [fields for _, fields in head[1:]], decimal)
    if header is None:
        _raise_word_in_first_row(path, head, decimal)
    if index_col is not None and not 0 <= index_col < len(first):
        raise TableError(
            f"--index-col {index_col}: {path} has {len(first)} columns (0 to {len(first) - 1})"
        )
    if index_col is None and header and first[0].strip().lower() in INDEX_NAMES:
        index_col = 0
    frame = _read_frame(path, text, delimiter, decimal, header, index_col, len(first))
    names = _clean_names(frame.columns) if header else None
    frame.columns = range(frame.shape[1])
    if index_col is None:
        index_col = _label_column(frame, decimal)
    return Table(path, frame, names, index_col, text, delimiter, decimal)


def _read_frame(path, text, delimiter, decimal, header, index_col, width):
    """pandas' reading of the file (the labels' column as text), rows checked."""
    import pandas

    try:
        frame = pandas.read_csv(
            io.StringIO(text),
            sep=delimiter,
            decimal=decimal,
            header=0 if header else None,
            dtype=None if index_col is None else {index_col: str},
            skip_blank_lines=True,
            skipinitialspace=True,
            engine="c",
        )
    except (ValueError, pandas.errors.ParserError, IndexError) as error:
        _check_row_lengths(path, text, delimiter)
        raise TableError(f"{path} cannot be read as a table: {error}") from None
    if (
        frame.shape[1] != width
        or not isinstance(frame.index, pandas.RangeIndex)
        or frame.isna().to_numpy().any()
    ):
        # pandas fills a short row with NaN, and takes the first field of
        # rows longer than the header as their index: check the rows' lengths
        _check_row_lengths(path, text, delimiter)
    if frame.shape[0] == 0:
        raise TableError(f"{path} has a header but no data rows")
    return frame


def _clean_names(columns):
    """Column names as text; quotes that surround every name are dropped."""
    names = [str(name).strip() for name in columns]
    if all(len(name) > 1 and name[0] == name[-1] == "'" for name in names):
        names = [name[1:-1] for name in names]
    return names


def _numbers(column, decimal):
    """Where the fields of a column (pandas text) are numbers."""
    import pandas

    return pandas.to_numeric(column.str.replace(decimal, ".", regex=False), errors="coerce").notna()


def _label_column(frame, decimal):
    """0 when the first column holds distinct words (names, dates): row labels."""
    from pandas.api.types import is_numeric_dtype

    labels = frame[0]
    if (
        frame.shape[1] < 2
        or is_numeric_dtype(labels)
        or labels.isna().any()
        or not labels.is_unique
        or _numbers(labels.astype(str), decimal).any()
    ):
        return None
    return 0


def _check_row_lengths(path, text, delimiter):
    rows = _rows(text, delimiter)
    width = len(next(rows)[1])
    for line, fields in rows:
        if len(fields) != width:
            raise TableError(f"{path}, line {line}: {len(fields)} fields, expected {width}")


def _raise_word_in_first_row(path, head, decimal):
    """The first row mixes numbers and words where numbers follow: a typo or names."""
    (first_line, first), below = head[0], head[1:]
    for line, fields in below:
        if len(fields) != len(first):
            raise TableError(f"{path}, line {line}: {len(fields)} fields, expected {len(first)}")
    for column, field in enumerate(first):
        if field.strip() and not _is_number(field, decimal):
            if any(_is_number(fields[column], decimal) for _, fields in below):
                raise TableError(
                    f"{path}, line {first_line}, column {column}: {field.strip()!r} is not a "
                    "number (if this line holds column names, add --header)"
                )
    raise TableError(f"{path} is not a table of numbers")


class Table:
    """The columns of a CSV file as pandas read them, numbered from 0.

    Attributes
    ----------
    path : str
        The file.
    names : list of str or None
        The header's column names, or None without a header row.
    index_col : int or None
        The column of row labels, or None.
    """

    def __init__(self, path, frame, names, index_col, text, delimiter, decimal):
        self.path, self.names, self.index_col = path, names, index_col
        self._frame, self._text, self._delimiter, self._decimal = frame, text, delimiter, decimal

    @property
    def n_rows(self):
        return self._frame.shape[0]

    @property
    def labels(self):
        """The row labels as text ('' where missing), or None."""
        if self.index_col is None:
            return None
        return self._frame[self.index_col].astype(object).fillna("").astype(str).to_numpy()

    @property
    def label_name(self):
        """The name of the labels' column ('row' when it has none), or None."""
        if self.index_col is None:
            return None
        name = "" if self.names is None else self.names[self.index_col]
        return "row" if name.lower() in INDEX_NAMES else name

    def describe(self, column):
        """How messages name a column: ``column 3 'firm'``."""
        name = "" if self.names is None else self.names[column]
        unnamed = UNNAMED.fullmatch(name) or not name
        return f"column {column}" if unnamed else f"column {column} {name!r}"

    def option_value(self, column):
        """What ``--exclude`` takes for a column: its name if it can, else its position."""
        names = self.names
        if names is None or "," in names[column] or names.count(names[column]) > 1:
            return str(column)
        return names[column]

    def choose(self, columns=None, exclude=None):
        """Positions of the data columns: ``columns`` (all but the labels when None)
        without ``exclude``, each a comma-separated list of names or positions."""
        if columns is None:
            chosen = [column for column in range(self._frame.shape[1]) if column != self.index_col]
        else:
            chosen = self._positions(columns, "--columns")
        if exclude is not None:
            excluded = set(self._positions(exclude, "--exclude"))
            chosen = [column for column in chosen if column not in excluded]
        if self.index_col in chosen:
            raise TableError(
                f"{self.path}: {self.describe(self.index_col)} holds the row labels; "
                "--index-col names another column for them"
            )
        if not chosen:
            raise TableError(f"{self.path}: no column left to read")
        return chosen

    def _positions(self, spec, option):
        positions = []
        for token in (token.strip() for token in spec.split(",")):
            if self.names is not None and token in self.names:
                position = self.names.index(token)
            elif token.isdigit() and int(token) < self._frame.shape[1]:
                position = int(token)
            else:
                raise TableError(
                    f"{option}: {self.path} has no column {token!r}; {self._listing()}"
                )
            if position in positions:
                raise TableError(f"{option}: {self.describe(position)} is given twice")
            positions.append(position)
        return positions

    def _listing(self):
        width = self._frame.shape[1]
        if self.names is None:
            return f"its columns are 0 to {width - 1} (no header row)"
        shown = ", ".join(self.names[:LISTED_NAMES]) + (", ..." if width > LISTED_NAMES else "")
        return f"its columns are {shown} (or 0 to {width - 1})"

    def values(self, columns, *, suggest=True):
        """The numbers of ``columns`` as float64, shape (rows, len(columns)).

        A column that is not numbers raises ``TableError``: the line and field
        that is not a number in a column of numbers, or the columns of text
        and, when ``suggest``, the options that leave them out.
        """
        from pandas.api.types import is_numeric_dtype

        others = [column for column in columns if not is_numeric_dtype(self._frame[column])]
        text = [column for column in others if self._mostly_words(column)]
        for column in others:
            if column not in text:
                line, field = self._first_word(column)
                raise TableError(
                    f"{self.path}, line {line}, {self.describe(column)}: {field!r} is not a number"
                )
        if text:
            raise TableError(self._text_message(text, suggest))
        values = self._frame[list(columns)].to_numpy(dtype=np.float64)
        infinite = np.isinf(values)
        if infinite.any():
            count = int(infinite.sum())
            line, column, field = self._first_field(
                [column for column, any_ in zip(columns, infinite.any(axis=0)) if any_],
                lambda field: (
                    _is_number(field, self._decimal)
                    and np.isinf(float(field.replace(self._decimal, ".")))
                ),
            ) or ("?", columns[0], "inf")
            raise TableError(
                f"{self.path}, line {line}, {self.describe(column)}: {field!r} is infinite "
                f"({count} infinite value{'' if count == 1 else 's'} in the chosen columns); "
                "the models take finite numbers: leave such a cell empty to mark it missing"
            )
        return values

    def _first_field(self, columns, wanted):
        """``(line, column, field)`` of the file's first field of ``columns`` (row by
        row) for which ``wanted(field)`` holds, or None."""
        rows = _rows(self._text, self._delimiter)
        if self.names is not None:
            next(rows)
        for line, fields in rows:
            for column in columns:
                field = fields[column].strip() if column < len(fields) else ""
                if wanted(field):
                    return line, column, field
        return None

    def _mostly_words(self, column):
        fields = self._frame[column].dropna().astype(str)
        return _numbers(fields, self._decimal).sum() < fields.size / 2

    def _first_word(self, column):
        """(line, field) of the first field of ``column`` that is not a number."""
        found = self._first_field(
            [column],
            lambda field: not _is_missing(field) and not _is_number(field, self._decimal),
        )
        if found is not None:
            return found[0], found[2]
        raise TableError(f"{self.path}: {self.describe(column)} is not a column of numbers")

    def _text_message(self, columns, suggest):
        line, field = self._first_word(columns[0])
        one = len(columns) == 1
        message = (
            f"{self.path}: {', '.join(map(self.describe, columns))} "
            f"{'holds' if one else 'hold'} text ({field!r} on line {line})"
        )
        if suggest:
            exclude = ",".join(map(self.option_value, columns))
            message += (
                f"; leave {'it' if one else 'them'} out with --exclude {shlex.quote(exclude)}"
            )
            if self.index_col is None:
                message += (
                    f", or take {'it' if one else 'one'} as row labels with "
                    f"--index-col {columns[0]}"
                )
        return message
