"""The one table formatter and CSV writer of the benchmarks."""

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from gfl_repro.io import atomic_write_text


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, as wide as their widest cell."""
    cells = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def write_csv(path: Path, columns: Sequence[str], records: Iterable[Mapping]) -> None:
    """``records`` as a CSV of ``columns`` (keys outside them are left out, missing ones empty),
    written atomically; the folder is created."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(Path(path), out.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV written by write_csv; none when the file does not exist."""
    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
