"""A run's stored rows as files a person opens elsewhere: metrics as CSV (a row per step, a
column per key) or JSONL (a line per step and key), samples as JSONL or CSV. Rows are read
from the database in chunks and streamed, so a long run's export never sits in memory."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from webapp.errors import Invalid
from webapp.runs.models import Metric, Run, Sample

WHAT = ("metrics", "samples")
FORMATS = ("csv", "jsonl")
CHUNK = 5000
SAMPLE_FIELDS = ("step", "index", "prompt", "completion", "reward", "advantage", "rewards",
                 "rejected")


def check_export(what: str, fmt: str) -> None:
    if what not in WHAT:
        raise Invalid("what must be metrics or samples.", fields={"what": "metrics or samples"})
    if fmt not in FORMATS:
        raise Invalid("format must be csv or jsonl.", fields={"format": "csv or jsonl"})


def filename(run: Run, what: str, fmt: str) -> str:
    return f"run-{run.pk}-{what}.{fmt}"


def _csv_line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def metrics_jsonl(run: Run) -> Iterator[str]:
    rows = (Metric.objects.filter(run=run).order_by("step", "key")
            .values_list("step", "key", "value"))
    for step, key, value in rows.iterator(chunk_size=CHUNK):
        yield json.dumps({"step": step, "key": key, "value": value}) + "\n"


def metrics_csv(run: Run) -> Iterator[str]:
    """``step`` then one column per key (sorted); a step without a key leaves its cell empty."""
    keys = sorted(Metric.objects.filter(run=run).values_list("key", flat=True).distinct())
    yield _csv_line(["step", *keys])
    column = {k: i for i, k in enumerate(keys)}
    rows = (Metric.objects.filter(run=run).order_by("step", "key")
            .values_list("step", "key", "value"))
    current: int | None = None
    cells: list[object] = []
    for step, key, value in rows.iterator(chunk_size=CHUNK):
        if step != current:
            if current is not None:
                yield _csv_line([current, *cells])
            current, cells = step, [""] * len(keys)
        cells[column[key]] = repr(value)
    if current is not None:
        yield _csv_line([current, *cells])


def _sample_rows(run: Run) -> Iterator[dict[str, object]]:
    rows = Sample.objects.filter(run=run).order_by("step", "index").values(*SAMPLE_FIELDS)
    for row in rows.iterator(chunk_size=CHUNK):
        if not run.produces_reward_model:
            row.pop("rejected")
        yield row


def samples_jsonl(run: Run) -> Iterator[str]:
    for row in _sample_rows(run):
        yield json.dumps(row, ensure_ascii=False) + "\n"


def samples_csv(run: Run) -> Iterator[str]:
    fields = [f for f in SAMPLE_FIELDS if f != "rejected" or run.produces_reward_model]
    yield _csv_line(fields)
    for row in _sample_rows(run):
        row["rewards"] = json.dumps(row["rewards"], ensure_ascii=False)
        yield _csv_line([row[f] for f in fields])


WRITERS = {("metrics", "csv"): metrics_csv, ("metrics", "jsonl"): metrics_jsonl,
           ("samples", "csv"): samples_csv, ("samples", "jsonl"): samples_jsonl}
