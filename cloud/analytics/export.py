"""Every analytics view as a download: the same rows as the JSON answer, as CSV or as an Excel
workbook for the monthly report.

A view is a `Report`: what it covers (`meta`, flat) and its rows (flat dicts of scalars, all with
the same keys, in `columns` order). CSV carries the rows only, UTF-8 with a byte-order mark so
that Excel shows Chinese text right; the workbook has the rows on one sheet and `meta` on a
second one.
"""

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from fastapi import Response
from openpyxl import Workbook

Scalar = str | int | float | bool | date | datetime | None

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"


@dataclass
class Report:
    #: the file's name without extension, e.g. "kpis-estate-a-2026-11-01-2026-11-30"
    name: str
    columns: list[str]
    rows: list[dict[str, Scalar]]
    meta: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "columns": self.columns, "rows": self.rows}


def _cell(value: Scalar) -> Scalar:
    # Excel has no time zones: an aware instant goes in as its UTC wall time
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _text(value: Scalar) -> Scalar:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, date | datetime) else value


def to_csv(report: Report) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=report.columns, extrasaction="raise", lineterminator="\r\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow({k: _text(v) for k, v in row.items()})
    return buf.getvalue().encode("utf-8-sig")


def to_xlsx(report: Report) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "data"
    sheet.append(report.columns)
    for row in report.rows:
        sheet.append([_cell(row[c]) for c in report.columns])
    about = book.create_sheet("about")
    for key, value in report.meta.items():
        about.append([key, value if isinstance(value, str | int | float | bool) or value is None else str(value)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def respond(report: Report, fmt: ExportFormat) -> dict[str, Any] | Response:
    """The JSON body, or the file with a download name."""
    if fmt == ExportFormat.JSON:
        return report.as_json()
    if fmt == ExportFormat.CSV:
        body, media = to_csv(report), "text/csv; charset=utf-8"
    else:
        body, media = to_xlsx(report), XLSX_TYPE
    return Response(
        content=body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{report.name}.{fmt.value}"'},
    )
