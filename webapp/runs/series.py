"""Metric series of long runs, downsampled in the database by min/max buckets.

A chart of a 10,000-step run cannot show 10,000 points per line, and a compare request over
ten such runs must not read 1.5M rows. Buckets of ``W`` steps keep their lowest and highest
point (in step order), and each series keeps its first and last point, so no spike
disappears. The buckets are computed by the database with a GROUP BY over step buckets, ahead
of time: whenever a step that is a multiple of a block width is recorded, the block of that
width ending there is built from the two half-width blocks before it (width 4 from the raw
rows). Widths are 4, 8, 16, ..., so a request picks the smallest width at least as coarse as
it needs and reads one stored block per bucket, plus the unfinished last bucket, which is
aggregated when asked for (from the finer blocks and at most three raw steps).

Every block is exact (min and max over every row it covers), so the downsampled series is
exactly what a brute-force bucketing would give; ``tests/test_runs_series.py`` checks that.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection

from webapp.runs.models import Metric, MetricBlock, Run

BLOCK_WIDTHS: tuple[int, ...] = tuple(4 << i for i in range(19))  # 4 .. 2**20 steps
X_KEYS = {"time": "perf/elapsed_s", "tokens": "perf/tokens_total"}
POINTS_MIN, POINTS_MAX = 10, 20_000

Series = dict[str, dict[str, list[float]]]

_METRIC = Metric._meta.db_table
_BLOCK = MetricBlock._meta.db_table
_POINTS = ("min", "max", "first", "last")


def _pivot(candidates: str, bucket: str) -> str:
    """Per (key, bucket) of the candidate points ``(key, step, value)``: the lowest, the
    highest, the first and the last point, as columns ``min_s, min_v, max_s, ...``. Window
    functions rank the points inside each bucket; the GROUP BY keeps the rank-1 ones.
    Portable across SQLite and PostgreSQL."""
    ranked = ", ".join(
        f"ROW_NUMBER() OVER (PARTITION BY key, bucket ORDER BY {order}) AS r_{name}"
        for name, order in zip(_POINTS, ("value, step", "value DESC, step", "step",
                                         "step DESC"), strict=True))
    picked = ", ".join(f"MAX(CASE WHEN r_{n} = 1 THEN step END) AS {n}_s, "
                       f"MAX(CASE WHEN r_{n} = 1 THEN value END) AS {n}_v" for n in _POINTS)
    return (f"SELECT key, bucket, {picked} FROM (SELECT key, step, value, bucket, {ranked} "
            f"FROM (SELECT key, step, value, {bucket} AS bucket FROM ({candidates}) c) b) r "
            "GROUP BY key, bucket")


def _block_points(where: str) -> str:
    """The four points of each block matching ``where``, as candidate rows."""
    return " UNION ALL ".join(f"SELECT key, {p}_step AS step, {p}_value AS value "
                              f"FROM {_BLOCK} WHERE {where}" for p in _POINTS)


def _candidates(width: int) -> str:
    """Points a block of ``width`` is built from (params: run id, first step, last step)."""
    if width == BLOCK_WIDTHS[0]:
        return (f"SELECT key, step, value FROM {_METRIC} "
                "WHERE run_id = %s AND step >= %s AND step <= %s")
    return _block_points(f"run_id = %s AND width = {width // 2} AND start >= %s "
                         "AND start <= %s")


def _insert_blocks(run_id: int, width: int, first: int, last: int) -> None:
    """Build every block of ``width`` inside steps ``first..last`` (whole blocks only)."""
    stored = ", ".join(f"{p}_step, {p}_value" for p in _POINTS)
    picked = ", ".join(f"{p}_s, {p}_v" for p in _POINTS)
    branches = 1 if width == BLOCK_WIDTHS[0] else len(_POINTS)
    sql = (f"INSERT INTO {_BLOCK} (run_id, width, start, key, {stored}) "
           f"SELECT %s, {width}, bucket * {width} + 1, key, {picked} "
           f"FROM ({_pivot(_candidates(width), f'(step - 1) / {width}')}) p WHERE true "
           "ON CONFLICT (run_id, width, start, key) DO NOTHING")
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_id, *[run_id, first, last] * branches])


def blocks_build_at(*, run_id: int, step: int) -> None:
    """After ``step`` is recorded: build the blocks that end at it."""
    for width in BLOCK_WIDTHS:
        if step % width:
            break  # widths double, so no wider block ends here either
        _insert_blocks(run_id, width, step - width + 1, step)


def blocks_rebuild(*, run_id: int) -> None:
    """Every block of a run, from its raw rows (runs recorded before blocks existed, or
    rows written in bulk)."""
    MetricBlock.objects.filter(run_id=run_id).delete()
    last = Metric.objects.filter(run_id=run_id).order_by("-step").values_list(
        "step", flat=True).first() or 0
    for width in BLOCK_WIDTHS:
        whole = last // width * width
        if not whole:
            break
        _insert_blocks(run_id, width, 1, whole)


def blocks_truncate(*, run_id: int, after_step: int) -> None:
    """Forget the blocks that reach past ``after_step`` (its later rows were removed)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_BLOCK} WHERE run_id = %s AND start + width - 1 > %s",
                       [run_id, after_step])


# --- reading ---

def bucket_width(last_step: int, points: int) -> int:
    """Steps per bucket so that ``last_step`` steps give at most ``points`` points (two per
    bucket plus the first and the last point): the narrowest block width that does."""
    buckets = max(1, (points - 2) // 2)
    need = math.ceil(last_step / buckets)
    return next((w for w in BLOCK_WIDTHS if w >= need), BLOCK_WIDTHS[-1])


def _key_filter(keys: Sequence[str] | None) -> tuple[str, list[str]]:
    if keys is None:
        return "", []
    return " AND key IN (" + ", ".join(["%s"] * len(keys)) + ")", list(keys)


def _tail_pieces(whole: int, last_step: int, width: int) -> tuple[list[tuple[int, int]], int]:
    """The finished narrower blocks that tile steps ``whole+1..last_step`` from the left
    (width, start), and the step after which only raw rows remain."""
    pieces, pos = [], whole
    for w in reversed([w for w in BLOCK_WIDTHS if w < width]):
        if pos + w <= last_step:
            pieces.append((w, pos + 1))
            pos += w
    return pieces, pos


def _tail(run_id: int, whole: int, last_step: int, width: int,
          keys: Sequence[str] | None) -> list[tuple[Any, ...]]:
    """The unfinished last bucket, aggregated now: one row per key as the blocks are."""
    if whole >= last_step:
        return []
    key_sql, key_params = _key_filter(keys)
    pieces, raw_after = _tail_pieces(whole, last_step, width)
    parts, params = [], []
    if pieces:
        where = " OR ".join(["(width = %s AND start = %s)"] * len(pieces))
        for p in _POINTS:
            parts.append(f"SELECT key, {p}_step AS step, {p}_value AS value FROM {_BLOCK} "
                         f"WHERE run_id = %s AND ({where}){key_sql}")
            params += [run_id, *[v for piece in pieces for v in piece], *key_params]
    parts.append(f"SELECT key, step, value FROM {_METRIC} WHERE run_id = %s AND step > %s"
                 f"{key_sql}")
    params += [run_id, raw_after, *key_params]
    with connection.cursor() as cursor:
        cursor.execute(_pivot(" UNION ALL ".join(parts), "0"), params)
        return [(row[0], *row[2:]) for row in cursor.fetchall()]


def _blocks(run_id: int, width: int, keys: Sequence[str] | None) -> list[tuple[Any, ...]]:
    key_sql, key_params = _key_filter(keys)
    columns = ", ".join(f"{p}_step, {p}_value" for p in _POINTS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, {columns} FROM {_BLOCK} WHERE run_id = %s AND width = %s"
                       f"{key_sql} ORDER BY start", [run_id, width, *key_params])
        return cursor.fetchall()


def _assemble(rows: Iterable[tuple[Any, ...]]) -> dict[str, list[tuple[int, float]]]:
    """Bucket rows ``(key, min_s, min_v, max_s, max_v, first_s, first_v, last_s, last_v)``
    in step order -> each key's points: min and max of every bucket in step order, the
    series' first point before them and its last after them."""
    out: dict[str, list[tuple[int, float]]] = {}
    ends: dict[str, list[tuple[int, float]]] = {}
    for key, ms, mv, xs, xv, fs, fv, ls, lv in rows:
        points = out.get(key)
        if points is None:
            points = out[key] = []
            ends[key] = [(fs, fv), (ls, lv)]
        else:
            ends[key][1] = (ls, lv)
        if ms == xs:
            points.append((ms, mv))
        elif ms < xs:
            points += ((ms, mv), (xs, xv))
        else:
            points += ((xs, xv), (ms, mv))
    for key, points in out.items():
        (fs, fv), (ls, lv) = ends[key]
        if points[0][0] != fs:
            points.insert(0, (fs, fv))
        if points[-1][0] != ls:
            points.append((ls, lv))
    return out


def series_downsampled(*, run: Run, points: int, keys: Sequence[str] | None = None,
                       x: str = "step") -> Series:
    """``{key: {"x": [...], "y": [...]}}`` of the run, at most ``points`` points per key.
    ``x`` is ``step``, ``time`` (training seconds since the start) or ``tokens``
    (cumulative completion tokens); points without that x (a reward model has no tokens)
    are left out."""
    last_step = run.step
    if last_step <= points:
        qs = Metric.objects.filter(run=run)
        if keys is not None:
            qs = qs.filter(key__in=keys)
        by_key: dict[str, list[tuple[int, float]]] = {}
        for key, step, value in qs.order_by("key", "step").values_list("key", "step", "value"):
            by_key.setdefault(key, []).append((step, value))
    else:
        width = bucket_width(last_step, points)
        whole = last_step // width * width
        by_key = _assemble([*_blocks(run.pk, width, keys),
                            *_tail(run.pk, whole, last_step, width, keys)])
    return _with_x(run, by_key, x)


def _with_x(run: Run, by_key: dict[str, list[tuple[int, float]]], x: str) -> Series:
    if x == "step":
        return {k: {"x": [s for s, _ in pts], "y": [v for _, v in pts]}
                for k, pts in by_key.items()}
    if not by_key:
        return {}
    first = min(pts[0][0] for pts in by_key.values())
    last = max(pts[-1][0] for pts in by_key.values())
    with connection.cursor() as cursor:  # one index range of the x key, without the ORM
        cursor.execute(f"SELECT step, value FROM {_METRIC} WHERE run_id = %s AND key = %s "
                       "AND step >= %s AND step <= %s", [run.pk, X_KEYS[x], first, last])
        at = dict(cursor.fetchall())
    out: Series = {}
    for key, pts in by_key.items():
        kept = [(at[s], v) for s, v in pts if s in at]
        if kept:
            out[key] = {"x": [a for a, _ in kept], "y": [v for _, v in kept]}
    return out
