"""Reading the command line's CSV files: pandas' reader, skem's one-line errors.

``read_table`` decides what the file looks like (compression, encoding,
delimiter, decimal mark, header, index column) from its first lines, unless
told, and reads it with ``pandas.read_csv``. When pandas cannot make numbers
of it, the file is scanned again with the csv module to say which line and
column is wrong, in one line.
"""

import csv
import gzip
import io
import re
from itertools import islice

#: Delimiters the sniffer may choose from.
DELIMITERS = ",;\t| "

INTEGER = re.compile(r"\s*[-+]?\d+\s*")
DECIMAL_COMMA = re.compile(r"\d,\d")

#: A pandas index column written by ``DataFrame.to_csv``: unnamed.
INDEX_NAMES = {"", "unnamed: 0"}


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


def _has_header(first, sample, delimiter, decimal):
    """Column names in the first row: no numbers there, or numbers that look like names."""
    filled = [field for field in first if field.strip()]
    numeric = [field for field in filled if _is_number(field, decimal)]
    if not numeric:
        return True
    if len(numeric) < len(filled):
        return None  # some numbers, some words: a typo or a header; the scan decides
    if all(INTEGER.fullmatch(field) for field in filled):
        # integers only (years, say): names when the rows below hold fractions
        below = [
            field
            for _, fields in islice(_rows(sample, delimiter), 1, 51)
            for field in fields
            if field.strip()
        ]
        return any(not INTEGER.fullmatch(field) for field in below)
    return False


def read_table(path, *, delimiter=None, header=None, index_col=None):
    """Numbers of a CSV file as ``(values, column names or None)``.

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
        A column of row labels to drop (0 is the first); an unnamed first
        column, as ``DataFrame.to_csv`` writes, is dropped when None.

    Empty fields are missing values (NaN). Raises ``TableError`` with the
    line and column of the first problem.
    """
    try:
        import pandas
    except ImportError:
        raise TableError(
            'reading CSV files needs pandas: pip install pandas (or "skem[cli]")'
        ) from None
    text = read_text(path)
    sample = text[:65536]
    delimiter = _check_delimiter(delimiter) or _sniff_delimiter(sample)
    # a decimal comma only where fields are separated otherwise and commas sit
    # between digits (as spreadsheets write with ';')
    decimal = "," if delimiter != "," and DECIMAL_COMMA.search(sample) else "."
    first_line = next(_rows(sample, delimiter), None)
    if first_line is None:
        raise TableError(f"{path} has no rows")
    first = first_line[1]
    if header is None:
        header = _has_header(first, sample, delimiter, decimal)
    if header is None:
        _raise_first_problem(path, text, delimiter, decimal, header=False, index_col=index_col)
    if index_col is None and header and first[0].strip().lower() in INDEX_NAMES:
        index_col = 0
    if index_col is not None and not 0 <= index_col < len(first):
        raise TableError(
            f"--index-col {index_col}: {path} has {len(first)} columns (0 to {len(first) - 1})"
        )
    try:
        frame = pandas.read_csv(
            io.StringIO(text),
            sep=delimiter,
            decimal=decimal,
            header=0 if header else None,
            index_col=index_col,
            skip_blank_lines=True,
            dtype="float64",
            skipinitialspace=True,
            engine="c",
        )
    except (ValueError, pandas.errors.ParserError, IndexError):
        _raise_first_problem(path, text, delimiter, decimal, header, index_col)
    if frame.isna().to_numpy().any():
        # pandas fills a short row with NaN: check the rows' lengths (in C)
        _check_row_lengths(path, text, delimiter)
    if frame.shape[0] == 0:
        raise TableError(f"{path} has a header but no data rows")
    names = [str(name).strip() for name in frame.columns] if header else None
    return frame.to_numpy(dtype="float64"), names


def _check_row_lengths(path, text, delimiter):
    rows = _rows(text, delimiter)
    width = len(next(rows)[1])
    for line, fields in rows:
        if len(fields) != width:
            raise TableError(f"{path}, line {line}: {len(fields)} fields, expected {width}")


def _raise_first_problem(path, text, delimiter, decimal, header, index_col):
    """Scan the file with the csv module and raise the first problem, in one line."""
    width = None
    for number, (line, fields) in enumerate(_rows(text, delimiter)):
        if width is None:
            width = len(fields)
        if len(fields) != width:
            raise TableError(f"{path}, line {line}: {len(fields)} fields, expected {width}")
        if number == 0 and header:
            continue
        for column, field in enumerate(fields):
            if column == index_col or not field.strip():
                continue
            if not _is_number(field, decimal):
                raise TableError(
                    f"{path}, line {line}, column {column + 1}: {field.strip()!r} is not a number"
                )
    if width is None:
        raise TableError(f"{path} has no rows")
    raise TableError(f"{path} is not a table of numbers")
