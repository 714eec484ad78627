"""JSON API for runs, metrics, samples and checkpoints."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import Field, Query, Router, Schema
from pydantic import StrictInt, WithJsonSchema

from training.algorithms import algorithms, get_algorithm
from training.reward_types import (
    MAX_REWARD_SOURCES,
    PATTERN_MAX_CHARS,
    TEXT_MAX_CHARS,
    WEIGHT_MAX,
    reward_types,
)
from webapp.errors import Invalid
from webapp.runs import compare, deletion, export, selectors, services
from webapp.runs.checkpoints import checkpoint_disk_usage
from webapp.runs.estimates import run_estimate
from webapp.runs.models import Checkpoint, Run, RunStatus
from webapp.runs.plans import run_plan
from webapp.runs.reward_tests import MAX_SAMPLES, rewards_score
from webapp.runs.selectors import QUERY_MAX, RUN_ORDERINGS
from webapp.runs.series import POINTS_MAX, POINTS_MIN, X_KEYS, series_downsampled
from webapp.runs.summaries import summary_of
from webapp.runs.tags import NOTES_MAX_CHARS, TAG_MAX_CHARS, TAGS_MAX
from webapp.schemas import (
    DATASET_ID_SCHEMA,
    NAME_SCHEMA,
    OFFSET_MAX,
    StrictIn,
    documented,
    requires,
)
from webapp.waiting import queue_place

STEP_MAX = 10**9  # ?after= and ?step= beyond any run, within what the database compares

router = Router(tags=["runs"])


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def hyperparameters_schema() -> dict[str, Any]:
    """Each algorithm's hyperparameters with their bounds, choices and defaults, as the
    algorithms declare them (GET /api/hyperparameters/{algorithm} has the same)."""
    variants = []
    for spec in algorithms():
        properties: dict[str, Any] = {}
        for f in spec.config.hyperparameter_fields():
            meta = f.metadata
            kind = _JSON_TYPES[type(f.default) if f.default is not None else float]
            prop: dict[str, Any] = {"type": [kind, "null"] if meta["nullable"] else kind,
                                    "description": meta["help"], "default": f.default}
            if meta["choices"]:
                prop["enum"] = list(meta["choices"])
            if meta["lo"] is not None:
                prop["minimum"] = meta["lo"]
            if meta["hi"] is not None:
                prop["maximum"] = meta["hi"]
            properties[f.name] = prop
        variants.append({"title": f"{spec.id} hyperparameters", "type": "object",
                         "properties": properties, "additionalProperties": False})
    return {"anyOf": variants, "description": "the algorithm's hyperparameters; each left "
                                              "out takes its default"}


def rewards_schema() -> dict[str, Any]:
    """The reward sources, one shape per declared reward type."""
    kinds = {"int": "integer", "float": "number"}
    variants = []
    for kind in reward_types():
        properties: dict[str, Any] = {"type": {"const": kind.id},
                                      "weight": {"type": "number", "minimum": -WEIGHT_MAX,
                                                 "maximum": WEIGHT_MAX, "default": 1.0}}
        for arg in kind.args:
            prop: dict[str, Any] = {"type": kinds.get(arg.kind, "string"),
                                    "description": arg.help}
            prop |= {k: v for k, v in (("minimum", arg.lo), ("maximum", arg.hi),
                                       ("default", arg.default)) if v is not None}
            if arg.choices:
                prop["enum"] = list(arg.choices)
            elif prop["type"] == "string":
                prop |= {"minLength": 1, "maxLength": PATTERN_MAX_CHARS if arg.kind == "regex"
                         else TEXT_MAX_CHARS}
            properties[arg.name] = prop
        variants.append({"title": kind.title, "type": "object", "properties": properties,
                         "required": ["type", *(a.name for a in kind.args if a.required)],
                         "additionalProperties": False})
    return {"type": "array", "minItems": 1, "maxItems": MAX_REWARD_SOURCES,
            "items": {"anyOf": variants},
            "description": "reward sources, summed with their weights (not for algorithms "
                           "that take none, such as reward_model)"}


TAGS_SCHEMA = {"type": "array", "maxItems": TAGS_MAX, "items": {
    "type": "string", "minLength": 1, "maxLength": TAG_MAX_CHARS,
    "pattern": r"^ *[\w.:;!?'()@#%&*+=/-][\w .:;!?'()@#%&*+=/-]*$"}}
NOTES_SCHEMA = {"type": "string", "maxLength": NOTES_MAX_CHARS}


class RunIn(StrictIn):
    model_config = requires("name", "dataset", "base_model")

    name: Any = documented(**NAME_SCHEMA)
    algorithm: str = Field("grpo", json_schema_extra={"enum": [s.id for s in algorithms()]})
    # not true, nor 1.0: both would read as dataset 1
    dataset: Annotated[StrictInt | str | None, WithJsonSchema(DATASET_ID_SCHEMA)] = None
    base_model: Any = documented(type="string", minLength=1, maxLength=200,
                                 description="a model id from GET /api/models")
    rewards: Any = documented(**rewards_schema())
    hyperparameters: Any = documented(**hyperparameters_schema())
    tags: Any = documented(**TAGS_SCHEMA, description="texts without commas")
    notes: Any = documented(**NOTES_SCHEMA)


class RunPatchIn(StrictIn):
    model_config = requires(minProperties=1)

    tags: Any = documented(**TAGS_SCHEMA, description="replaces the run's tags")
    notes: Any = documented(**NOTES_SCHEMA, description="replaces the run's notes")


class QueueOut(Schema):
    position: int = Field(description="1: the next job a free worker starts")
    eta_s: float | None = Field(description="seconds until a worker is free, when every job "
                                "ahead is running and has shown its pace")
    running: int
    queued_ahead: int


class SummaryOut(Schema):
    reward_final: float | None
    reward_best: float | None
    kl_final: float | None
    tokens_per_s: float | None
    peak_mem_mb: float | None
    wall_s: float | None


class AttemptOut(Schema):
    attempt: int
    worker: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    resumed_from_step: int | None


class RunOut(Schema):
    id: int
    name: str
    algorithm: str
    status: str
    step: int
    max_steps: int
    dataset: int
    base_model: str
    parent_checkpoint: int | None
    rewards: list[dict[str, Any]]
    hyperparameters: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str
    stop_reason: str
    cancel_requested: bool
    attempt: int
    summary: SummaryOut
    attempts: list[AttemptOut]
    tags: list[str]
    notes: str
    queue: QueueOut | None = Field(None, description="while the run waits for a worker")


class DiskOut(Schema):
    weights: int
    training_state: int
    archive: int
    total: int


class CheckpointOut(Schema):
    id: int
    step: int
    size_bytes: int = Field(description="the zip's size (its sha256 is sha256)")
    sha256: str
    model_id: str
    created_at: datetime
    disk: DiskOut = Field(description="bytes on disk: the model directory, the training "
                          "state kept to resume, the zip, and their total")


class Paging(Schema):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=OFFSET_MAX)


_DERIVED = ("dataset", "parent_checkpoint", "summary", "attempts", "queue")


def run_out(run: Run) -> dict[str, Any]:
    return {f: getattr(run, f) for f in RunOut.model_fields if f not in _DERIVED} | {
        "dataset": run.dataset_id, "parent_checkpoint": run.parent_checkpoint_id,
        "summary": summary_of(run),
        "attempts": [{f: getattr(a, f) for f in AttemptOut.model_fields}
                     for a in run.attempts.all()],
        "queue": place.as_json() if (place := queue_place(job=run, viewer_id=run.owner_id))
        else None}


class RunListQuery(Paging):
    algorithm: str | None = Field(None, json_schema_extra={
        "enum": [s.id for s in algorithms()]})
    status: str | None = Field(None, json_schema_extra={"enum": list(RunStatus.values)})
    dataset: str | None = Field(None, json_schema_extra={"pattern": r"^([0-9]{1,18})?$"})
    base_model: str | None = Field(None, max_length=QUERY_MAX)
    q: str | None = Field(None, max_length=QUERY_MAX, description="text in the name")
    tag: str | None = Field(None, max_length=QUERY_MAX)
    ordering: str | None = Field(None, description="a column, '-' first for descending",
                                 json_schema_extra={"enum": [
                                     *RUN_ORDERINGS, *(f"-{o}" for o in RUN_ORDERINGS)]})


MAX_MORE = compare.COMPARE_MAX_RUNS - 1  # ids after the first


class CompareQuery(Schema):
    ids: str = Field("", description="run ids, comma-separated (at most "
                     f"{compare.COMPARE_MAX_RUNS}); or give tag", json_schema_extra={
                         "pattern": f"^([0-9]{{1,18}}(,[0-9]{{1,18}}){{0,{MAX_MORE}}})?$"})
    tag: str | None = Field(None, max_length=QUERY_MAX,
                            description="instead of ids: your newest runs with this tag")
    keys: str | None = Field(None, description="metric keys, comma-separated; all when left "
                             "out")
    points: int = Field(1000, ge=POINTS_MIN, le=POINTS_MAX, description="points per series")
    x: str = Field("step", description="step, time (training seconds) or tokens (cumulative "
                   "completion tokens)", json_schema_extra={"enum": ["step", *X_KEYS]})


class CompareRunOut(RunOut):
    dataset_name: str


class DiffRowOut(Schema):
    field: str
    values: list[Any]
    differs: bool


class CompareOut(Schema):
    runs: list[CompareRunOut]
    diff: list[DiffRowOut]
    ratios: dict[str, float] | None
    series: dict[str, dict[str, dict[str, list[float]]]]


class PromptOut(Schema):
    prompt: str
    runs: int
    samples: int


def _parse_keys(raw: str | None) -> list[str] | None:
    if raw is None or not raw.strip():
        return None
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if len(keys) > 200 or any(len(k) > 100 for k in keys):
        raise Invalid("Ask for at most 200 metric keys of at most 100 characters each.",
                      fields={"keys": "too many or too long"})
    return keys


def _check_points(points: int) -> None:
    if not POINTS_MIN <= points <= POINTS_MAX:
        raise Invalid(f"points must be from {POINTS_MIN} to {POINTS_MAX}.",
                      fields={"points": f"from {POINTS_MIN} to {POINTS_MAX}"})


@router.get("/algorithms")
def list_algorithms(request: HttpRequest):
    """Every algorithm a run can use: id, title, what it does, the data set kinds and base
    model kinds it takes, whether reward sources apply, and its presets."""
    return [{"id": s.id, "title": s.title, "summary": s.summary,
             "dataset_kinds": list(s.dataset_kinds), "base_kinds": list(s.base_kinds),
             "produces": s.produces, "uses_rewards": s.uses_rewards,
             "presets": {k: dict(v) for k, v in s.presets.items()}} for s in algorithms()]


@router.get("/hyperparameters/{algorithm}")
def hyperparameter_schema(request: HttpRequest, algorithm: str):
    """Every hyperparameter of an algorithm with its default, help text and bounds."""
    spec = get_algorithm(algorithm)
    if spec is None:
        raise Http404(f"Unknown algorithm '{algorithm}'.")
    return [{"name": f.name, "default": f.default, **{k: v for k, v in f.metadata.items()}}
            for f in spec.config.hyperparameter_fields()]


@router.get("/rewards")
def list_reward_types(request: HttpRequest):
    """Every reward type with its arguments (kind, bounds, default, help)."""
    return [t.as_json() for t in reward_types()]


class RewardTestIn(StrictIn):
    model_config = requires("rewards", "samples")

    rewards: Any = documented(**rewards_schema())
    samples: Any = documented(
        type="array", minItems=1, maxItems=MAX_SAMPLES,
        items={"type": "object", "required": ["completion"],
               "properties": {"prompt": {"type": "string", "maxLength": 20_000},
                              "completion": {"type": "string", "maxLength": 20_000}},
               "additionalProperties": {"type": ["string", "number", "null"],
                                        "maxLength": 2000}},
        description="completions to score, with the columns the sources read (answer, ...)")


@router.post("/rewards/score")
def score_rewards(request: HttpRequest, payload: RewardTestIn):
    """Score samples with reward sources before launching: each source's score per sample,
    the weighted total, and what the sources report (e.g. math's no-answer share). Rule-based
    sources only; a reward model is scored in runs."""
    return rewards_score(rewards=payload.rewards, samples=payload.samples)


@router.post("/runs", response={201: RunOut})
def create_run(request: HttpRequest, payload: RunIn):
    run = services.run_create(owner=request.user, name=payload.name,
                              algorithm=payload.algorithm, dataset_id=payload.dataset,
                              base_model=payload.base_model, rewards=payload.rewards,
                              hyperparameters=payload.hyperparameters, tags=payload.tags,
                              notes=payload.notes)
    return 201, run_out(run)


class EstimatePartsOut(Schema):
    weights: int
    gradients: int
    optimizer: int
    reference: int
    critic: int
    reward_models: int
    kv_cache: int
    decode_copies: int = Field(description="the CPU decoder's laid-out weights (fp32)")
    activations: int
    runtime: int = Field(description="the worker process itself (CPU)")


class EstimateOut(Schema):
    peak_mb_per_device: int
    parts: EstimatePartsOut = Field(description="MB each; the peak is what the run keeps "
                                    "plus sampling and training (the larger on a GPU, both "
                                    "on the CPU)")
    precision: str
    micro_batch: int
    device: str = Field(description="the device kind the parts are for: cuda | cpu")
    prompt_tokens: int = Field(description="the prompt length assumed, from the data set")
    fits: list[str] = Field(description="workers with a device that can hold the run")
    per_worker: dict[str, Any]
    warning: str | None


@router.post("/runs/estimate", response=EstimateOut)
def estimate_run(request: HttpRequest, payload: RunIn):
    """The body of ``POST /api/runs``: the run's estimated peak memory per device, its parts,
    and the workers up now that can hold it (nothing is stored)."""
    plan = run_plan(owner=request.user, algorithm=payload.algorithm,
                    dataset_id=payload.dataset, base_model=payload.base_model,
                    rewards=payload.rewards, hyperparameters=payload.hyperparameters)
    return run_estimate(owner=request.user, plan=plan)


@router.get("/runs", response=list[RunOut])
def list_runs(request: HttpRequest, query: Query[RunListQuery]):
    """Filters: ``algorithm``, ``status``, ``dataset`` (id), ``base_model`` (model id),
    ``q`` (text in the name), ``tag``; ``ordering`` by any summary column (``-`` descending)."""
    filters = selectors.RunFilters.parse(query.dict())
    return [run_out(r) for r in selectors.run_list(user=request.user, filters=filters,
                                                   limit=query.limit, offset=query.offset)]


@router.get("/runs/compare", response=CompareOut)
def compare_runs(request: HttpRequest, query: Query[CompareQuery]):
    """Settings, diff, summary and metric series of several runs, each series downsampled
    to at most ``points`` points by min/max buckets (:mod:`webapp.runs.series`)."""
    ids = compare.ids_to_compare(user=request.user, ids=query.ids, tag=query.tag)
    keys = _parse_keys(query.keys)
    _check_points(query.points)
    if query.x not in ("step", *X_KEYS):
        raise Invalid("x must be step, time or tokens.", fields={"x": "step, time or tokens"})
    runs = selectors.runs_get_for_user(user=request.user, run_ids=ids)
    body = {"runs": [_compare_run_out(r) for r in runs],
            "diff": compare.run_settings_diff(runs), "ratios": compare.ppo_grpo_ratios(runs),
            "series": compare.compare_series(runs, keys=keys, points=query.points, x=query.x)}
    # Tens of thousands of points: encoded directly by orjson (a tenth of json's time for
    # floats) rather than validated one by one against the schema.
    return HttpResponse(orjson.dumps(body), content_type="application/json")


def _compare_run_out(run: Run) -> dict[str, Any]:
    return run_out(run) | {"dataset_name": run.dataset.name}


@router.get("/runs/compare/prompts", response=list[PromptOut])
def compare_prompts(request: HttpRequest, ids: str = Query(..., pattern=(
        f"^[0-9]{{1,18}}(,[0-9]{{1,18}}){{0,{MAX_MORE}}}$"))):
    """Prompts that occur in the samples of the runs, those in the most runs first."""
    runs = selectors.runs_get_for_user(user=request.user, run_ids=compare.parse_run_ids(ids))
    return list(compare.sample_prompts(runs))


@router.get("/runs/{run_id}", response=RunOut)
def get_run(request: HttpRequest, run_id: int):
    return run_out(selectors.run_get_for_user(user=request.user, run_id=run_id))


@router.patch("/runs/{run_id}", response=RunOut)
def update_run(request: HttpRequest, run_id: int, payload: RunPatchIn):
    """Replace the run's ``tags`` and/or ``notes``, whatever its state."""
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    if payload.tags is None and payload.notes is None:
        raise Invalid("Send tags, notes or both.", fields={"tags": "or notes: required"})
    return run_out(services.run_update(run=run, tags=payload.tags, notes=payload.notes))


@router.get("/runs/{run_id}/export")
def export_run(request: HttpRequest, run_id: int, what: str = "metrics", format: str = "csv"):
    """The stored rows as a file: ``what`` metrics (CSV: a row per step, a column per key;
    JSONL: a line per step and key) or samples (JSONL or CSV)."""
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    export.check_export(what, format)
    kind = "text/csv" if format == "csv" else "application/x-ndjson"
    response = StreamingHttpResponse(export.WRITERS[what, format](run),
                                     content_type=f"{kind}; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="{export.filename(run, what, format)}"')
    return response


@router.post("/runs/{run_id}/cancel", response={202: RunOut})
def cancel_run(request: HttpRequest, run_id: int):
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    return 202, run_out(services.run_cancel(run=run))


@router.get("/runs/{run_id}/metrics")
def run_metrics(request: HttpRequest, run_id: int, after: int = Query(0, ge=0, le=STEP_MAX),
                points: int | None = None):
    """Steps after ``after``; with ``points``, the whole history downsampled on the server to
    at most that many points per series (min/max buckets)."""
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    if points is None:
        return selectors.run_metrics_since(run=run, after=after)
    _check_points(points)
    return {"last_step": run.step, "series": series_downsampled(run=run, points=points)}


PROMPT_MAX = 100_000


@router.get("/runs/{run_id}/samples")
def run_samples(request: HttpRequest, run_id: int,
                step: int | None = Query(None, ge=0, le=STEP_MAX), prompt: str | None = None):
    """The samples of ``step`` (default: the latest step with samples), only those of
    ``prompt`` when it is given."""
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    if prompt is not None and len(prompt) > PROMPT_MAX:
        raise Invalid("prompt is too long.", fields={"prompt": f"at most {PROMPT_MAX}"})
    shown, samples = selectors.run_samples(run=run, step=step, prompt=prompt)
    return [{"step": s.step, "index": s.index, "prompt": s.prompt, "completion": s.completion,
             "rewards": s.rewards, "reward": s.reward, "advantage": s.advantage,
             **({"rejected": s.rejected} if run.produces_reward_model else {})}
            for s in samples]


@router.get("/runs/{run_id}/samples/steps")
def run_sample_steps(request: HttpRequest, run_id: int, prompt: str | None = None):
    """``{"steps": [...]}``: the steps that kept samples (of ``prompt``, when given)."""
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    if prompt is not None and len(prompt) > PROMPT_MAX:
        raise Invalid("prompt is too long.", fields={"prompt": f"at most {PROMPT_MAX}"})
    return {"steps": selectors.run_sample_steps(run=run, prompt=prompt)}


@router.delete("/runs/{run_id}", response={204: None})
def delete_run(request: HttpRequest, run_id: int):
    """An ended run with its metrics, samples and checkpoint files; 409 while it runs, or
    when a run or a reward source depends on one of its checkpoints (named)."""
    deletion.run_delete(run=selectors.run_get_for_user(user=request.user, run_id=run_id))
    return 204, None


def _checkpoint_out(checkpoint: Checkpoint) -> dict[str, Any]:
    disk = checkpoint_disk_usage(checkpoint)
    return {"id": checkpoint.pk, "step": checkpoint.step, "size_bytes": checkpoint.size_bytes,
            "sha256": checkpoint.sha256, "model_id": checkpoint.model_id,
            "created_at": checkpoint.created_at,
            "disk": {"weights": disk.weights, "training_state": disk.training_state,
                     "archive": disk.archive, "total": disk.total}}


@router.get("/runs/{run_id}/checkpoints", response=list[CheckpointOut])
def run_checkpoints(request: HttpRequest, run_id: int):
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    return [_checkpoint_out(c) for c in selectors.checkpoint_list(run=run)]


@router.delete("/checkpoints/{checkpoint_id}", response={204: None})
def delete_checkpoint(request: HttpRequest, checkpoint_id: int):
    """One checkpoint of an ended run, its files too; 409 naming what depends on it."""
    checkpoint = selectors.checkpoint_get_for_user(user=request.user,
                                                   checkpoint_id=checkpoint_id)
    deletion.checkpoint_delete(checkpoint=checkpoint)
    return 204, None


@router.get("/checkpoints/{checkpoint_id}/download")
def download_checkpoint(request: HttpRequest, checkpoint_id: int):
    checkpoint = selectors.checkpoint_get_for_user(user=request.user,
                                                   checkpoint_id=checkpoint_id)
    path = checkpoint.archive_path
    if not path.exists():
        raise Http404("The checkpoint's archive is gone from the server's disk.")
    filename = f"run-{checkpoint.run_id}-step-{checkpoint.step}.zip"
    return FileResponse(open(path, "rb"), as_attachment=True, filename=filename,
                        content_type="application/zip")
