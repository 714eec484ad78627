"""What an uploaded file must pass before any parser reads it, with no Django models and no
settings (the caller passes :class:`UploadLimits`): a name this server reads, first bytes that
agree with the name, and, for JSONL and CSV, lines that are UTF-8, not too long and (JSON) not
too deeply nested; for Parquet, a footer that promises a bounded amount of data. Parsers are
where hostile files do their harm (a 20,000-deep JSON value crashes the process), so these
checks read the bytes themselves, once, in bounded memory, and never recurse.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from webapp.errors import Invalid, TooLarge, Unsupported
from webapp.strictjson import nesting_depth

PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
ACCEPTED = "JSON Lines (.jsonl), CSV (.csv) or Parquet (.parquet), each optionally gzipped (.gz)"
# An HTML, XML or PHP document, whatever the file is named.
_MARKUP = re.compile(rb"<(?:!doctype|html|head|body|script|iframe|svg|xml|\?xml|\?php|!--)",
                     re.IGNORECASE)


class Format(enum.StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


EXTENSIONS = {".jsonl": Format.JSONL, ".csv": Format.CSV, ".parquet": Format.PARQUET}


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_decompressed_bytes: int
    max_rows: int
    max_line_bytes: int = 1024 * 1024
    """One line of a JSONL or CSV file."""
    max_depth: int = 32
    """Nesting of a JSON line, or of a Parquet column's type."""


def format_from_name(filename: str) -> Format:
    """The format a name ends in (``.jsonl``, ``.csv``, ``.parquet``, each maybe ``.gz``), or
    415 for any other name."""
    fmt = EXTENSIONS.get(Path(filename.lower().removesuffix(".gz")).suffix)
    if fmt is None:
        shown = f"'{filename}'" if filename else "The file"
        raise Unsupported(f"{shown} is not a kind of file this server reads; upload {ACCEPTED}.")
    return fmt


def detect_format(filename: str, head: bytes) -> Format:
    """The format the file's name says (.jsonl, .csv, .parquet, each maybe .gz), once the
    first bytes agree: a document of markup, a zip or a binary file named .csv is refused
    (415) whatever its name claims."""
    shown = f"'{filename}'" if filename else "The file"
    fmt = format_from_name(filename)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(ZIP_MAGIC):
        raise Unsupported(f"Zip archives are not supported; upload {ACCEPTED}.")
    if _MARKUP.match(text):
        raise Unsupported(f"{shown} holds an HTML or XML document, not {fmt.value} data.")
    if fmt is Format.PARQUET and not head.startswith(PARQUET_MAGIC):
        raise Unsupported(f"{shown} is named .parquet but is not a Parquet file.")
    if fmt is Format.CSV and b"\x00" in head:
        raise Unsupported(f"{shown} is named .csv but holds binary data, not text.")
    return fmt


def check_lines(path: Path, fmt: Format, *, max_line_bytes: int, max_depth: int) -> None:
    """Before a parser sees the file: every line is UTF-8 and at most ``max_line_bytes``
    long, and (JSON Lines) nests at most ``max_depth`` levels; else :class:`Invalid` naming
    the line. A parser handed a 20,000-deep value recurses until the process crashes; these
    checks read each line once, in bounded memory, and never recurse."""
    with path.open("rb") as f:
        number = 0
        while line := f.readline(max_line_bytes + 2):
            number += 1
            row = number if fmt is Format.JSONL else number - 1  # CSV: line 1 is the header
            if len(line.rstrip(b"\r\n")) > max_line_bytes:
                raise _line_error(number, row, fmt, f"is longer than {max_line_bytes} bytes, the "
                                  "most one line may hold (RLHF_UPLOAD_MAX_LINE_BYTES)")
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _line_error(number, row, fmt, f"is not UTF-8 text (byte {exc.start + 1} of "
                                  "the line); save the file as UTF-8") from None
            if fmt is Format.JSONL and (depth := nesting_depth(line)) > max_depth:
                raise _line_error(number, row, fmt, f"nests {depth} levels deep; at most "
                                  f"{max_depth} are accepted (RLHF_JSON_MAX_DEPTH)")


def _line_error(number: int, row: int, fmt: Format, problem: str) -> Invalid:
    where = f"Line {number}" if fmt is Format.JSONL else f"Line {number} of the CSV"
    return Invalid(f"{where} {problem}.", fields={"file": "refused line"}, rows=[max(row, 1)])


def check_parquet(path: Path, limits: UploadLimits) -> None:
    """What a Parquet file's footer says, before its data is read: not too many rows, no
    column nested deeper than ``max_depth``, and data that unpacks to at most
    ``max_decompressed_bytes`` (Parquet's own compression is a bomb as gzip is)."""
    try:
        metadata = pq.ParquetFile(path).metadata
        schema = metadata.schema.to_arrow_schema()
    except Exception as exc:
        raise Invalid(f"The file is not a readable Parquet file: {str(exc)[:300]}",
                      fields={"file": "unreadable"}) from None
    if metadata.num_rows == 0:
        raise Invalid("The file has no rows.", fields={"file": "no rows"})
    if metadata.num_rows > limits.max_rows:
        raise TooLarge(f"The file has {metadata.num_rows} rows; this server accepts up to "
                       f"{limits.max_rows} (RLHF_UPLOAD_MAX_ROWS).")
    unpacked = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if unpacked > limits.max_decompressed_bytes:
        raise TooLarge(f"The Parquet data unpacks to {unpacked} bytes; this server accepts up to "
                       f"{limits.max_decompressed_bytes} (RLHF_UPLOAD_MAX_DECOMPRESSED_BYTES).")
    _check_unpacked_size(path, limits.max_decompressed_bytes)
    for column in schema:
        if (depth := _type_depth(column.type)) > limits.max_depth:
            raise Invalid(f"The Parquet column '{column.name[:100]}' nests {depth} levels deep; "
                          f"at most {limits.max_depth} are accepted (RLHF_JSON_MAX_DEPTH).",
                          fields={"file": "too deeply nested"})


def _check_unpacked_size(path: Path, max_bytes: int) -> None:
    """The footer's sizes count dictionary-encoded data as stored: one long value repeated on
    every row is small there and huge in memory. So the data is also decoded a few rows at a
    time, in bounded memory, adding up what it takes, and refused once that passes the cap."""
    total = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=16):
        total += batch.nbytes
        if total > max_bytes:
            raise TooLarge(f"The Parquet data unpacks to more than {max_bytes} bytes, the most "
                           "this server accepts (RLHF_UPLOAD_MAX_DECOMPRESSED_BYTES).")


def _type_depth(arrow_type: pa.DataType) -> int:
    """Levels of lists, structs and maps in an Arrow type (a plain value is 0)."""
    if pa.types.is_struct(arrow_type):
        return 1 + max((_type_depth(arrow_type.field(i).type)
                        for i in range(arrow_type.num_fields)), default=0)
    if pa.types.is_map(arrow_type):
        return 1 + max(_type_depth(arrow_type.key_type), _type_depth(arrow_type.item_type))
    if (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
            or pa.types.is_fixed_size_list(arrow_type)):
        return 1 + _type_depth(arrow_type.value_type)
    return 0
