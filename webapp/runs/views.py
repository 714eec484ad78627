"""Pages for runs: the list, the launch form, and the live run page with its fragments."""
from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from training.algorithms import algorithm_choices, algorithms, chart_catalog, get_algorithm
from training.algorithms.reward_model import EVAL_MIN_PAIRS
from webapp.datasets.models import Dataset
from webapp.errors import ServiceError
from webapp.runs import compare, deletion, selectors, services
from webapp.runs.estimates import run_estimate
from webapp.runs.forms import MAX_REWARD_ROWS, RunForm, reward_form_types, rewards_from_post
from webapp.runs.models import Run, RunStatus
from webapp.runs.naming import model_refs
from webapp.runs.plans import run_plan
from webapp.runs.prefill import prefill_from
from webapp.runs.reward_tests import rewards_score
from webapp.waiting import queue_place

DEFAULT_REWARDS = [{"type": "length", "target": 200, "weight": 1.0}]


RUNS_PER_PAGE = 50
# The runs table's sortable columns: (ordering name, heading, numeric).
RUN_COLUMNS = [("name", "Name", False), ("status", "Status", False),
               ("algorithm", "Algorithm", False), ("step", "Steps", True),
               ("base_model", "Base model", False), ("dataset", "Dataset", False),
               ("reward_final", "Final reward", True), ("reward_best", "Best reward", True),
               ("kl_final", "Final KL", True), ("tokens_per_s", "Tokens/s", True),
               ("peak_mem_mb", "Peak memory", True), ("wall_s", "Wall time", True),
               ("created_at", "Created", False)]


@login_required
def run_list_page(request: HttpRequest) -> HttpResponse:
    """Filters, sorting by any column, paging, and a checkbox per row to compare runs."""
    try:
        filters = selectors.RunFilters.parse(request.GET)
    except ServiceError as exc:
        messages.error(request, exc.detail)
        filters = selectors.RunFilters()
    runs = selectors.run_filtered(user=request.user, filters=filters).select_related(
        "dataset").prefetch_related("tag_rows")
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "runs/list.html", {
        "page": page, "runs": page.object_list, "filters": filters, "columns": RUN_COLUMNS,
        "filtered": filters != selectors.RunFilters(ordering=filters.ordering),
        "query": query.urlencode(), "algorithms": algorithm_choices(),
        "statuses": RunStatus.choices,
        "datasets": Dataset.objects.filter(owner_id=request.user.pk, hidden=False
                                           ).order_by("name"),
        "base_models": selectors.run_base_models(user=request.user),
        "tags": selectors.run_tags(user=request.user)})


@login_required
def run_compare_page(request: HttpRequest) -> HttpResponse:
    """``/runs/compare/?ids=1,2,3`` (the runs page's checkboxes send ``?id=1&id=2``, which
    is turned into that shareable form), or ``?tag=baseline``: the newest runs with it."""
    if "id" in request.GET:
        return redirect(reverse("runs:compare") + "?ids=" + ",".join(request.GET.getlist("id")))
    try:
        runs = selectors.runs_get_for_user(user=request.user, run_ids=compare.ids_to_compare(
            user=request.user, ids=request.GET.get("ids", ""), tag=request.GET.get("tag")))
    except ServiceError as exc:
        messages.error(request, exc.detail + " Tick two or more runs and press Compare.")
        return redirect("runs:list")
    diff = compare.run_settings_diff(runs)
    names = model_refs([v for row in diff for v in row["values"] if isinstance(v, str) and (
        row["field"] == "base_model" or row["field"].endswith(".model"))],
        owner_id=request.user.pk)
    return render(request, "runs/compare.html", {
        "runs": runs, "ids": ",".join(str(r.pk) for r in runs),
        "runs_json": [{"id": r.pk, "name": r.name, "index": i, "algorithm": r.algorithm,
                       "status": r.status, "reward_model": r.produces_reward_model}
                      for i, r in enumerate(runs)],
        "diff": [row | {"shown": [_setting_text(row["field"], v, runs, names)
                                  for v in row["values"]]} for row in diff],
        "differing": sum(row["differs"] for row in diff),
        "ratios": compare.ppo_grpo_ratios(runs), "chart_catalog": chart_catalog().as_json()})


def _setting_text(field: str, value: object, runs: list, names: dict) -> str:
    """A diff cell as a person reads it: dataset names, checkpoints as their run and step."""
    if value is None:
        return "–"
    if (field == "base_model" or field.endswith(".model")) and isinstance(value, str):
        return names[value].text
    if field == "dataset":
        return next((r.dataset.name for r in runs if r.dataset_id == value), str(value))
    if field == "parent_checkpoint":
        parent = next(r.parent_checkpoint for r in runs if r.parent_checkpoint_id == value)
        return f"run {parent.run.name}, step {parent.step}"
    return json.dumps(value) if isinstance(value, dict | list | bool) else str(value)


def _form_context(form: RunForm, rewards: list[dict], errors: dict[str, str] | None = None,
                  detail: str = "") -> dict:
    spec = form.spec
    return {"form": form, "rewards": rewards or DEFAULT_REWARDS,
            "reward_types": reward_form_types(form.user) if spec.uses_rewards else [],
            "uses_rewards": spec.uses_rewards, "algorithm": spec.id,
            "algorithms": algorithm_choices(), "algorithm_label": spec.title,
            "algorithm_summary": spec.summary, "max_reward_rows": MAX_REWARD_ROWS,
            "presets_json": json.dumps(spec.presets),
            "reward_errors": {k: v for k, v in (errors or {}).items()
                              if k.startswith("rewards")}, "detail": detail}


def _algorithm(request: HttpRequest) -> str:
    value = request.POST.get("algorithm") or request.GET.get("algorithm") or ""
    return value if get_algorithm(value) else algorithms()[0].id


@login_required
def run_new(request: HttpRequest) -> HttpResponse:
    algorithm = _algorithm(request)
    if request.method != "POST":
        prefill = prefill_from(request, algorithm=algorithm)
        form = RunForm(user=request.user, algorithm=prefill.algorithm, initial=prefill.initial)
        context = _form_context(form, prefill.rewards or DEFAULT_REWARDS)
        return render(request, "runs/new.html", context | {"prefill_note": prefill.note})
    form = RunForm(request.POST, user=request.user, algorithm=algorithm)
    spec = get_algorithm(algorithm)
    rewards = rewards_from_post(request.POST) if spec and spec.uses_rewards else []
    if not form.is_valid():
        return render(request, "runs/new.html", _form_context(form, rewards), status=422)
    try:
        run = services.run_create(
            owner=request.user, name=form.cleaned_data["name"], algorithm=algorithm,
            dataset_id=form.cleaned_data["dataset"].pk,
            base_model=form.cleaned_data["base_model"], rewards=rewards,
            hyperparameters=form.hyperparameters(), tags=form.cleaned_data["tags"],
            notes=form.cleaned_data["notes"])
    except ServiceError as exc:
        for key, message in (exc.fields or {}).items():
            name = "hp_" + key.split(".", 1)[1] if key.startswith("hyperparameters.") else key
            if name in form.fields:
                form.add_error(name, message)
        return render(request, "runs/new.html",
                      _form_context(form, rewards, exc.fields, exc.detail), status=exc.status)
    messages.success(request, f"Run '{run.name}' is queued.", extra_tags="launch")
    return redirect("runs:detail", run_id=run.pk)


PART_LABELS = {"weights": "weights", "gradients": "gradients", "optimizer": "AdamW states",
               "reference": "reference model", "critic": "critic", "reward_models": "reward models",
               "kv_cache": "KV cache", "decode_copies": "decoder's weight copies",
               "activations": "activations", "runtime": "process"}


@login_required
@require_POST
def run_estimate_fragment(request: HttpRequest) -> HttpResponse:
    """The launch form's memory estimate, as its fields stand (htmx, on every change)."""
    algorithm = _algorithm(request)
    form = RunForm(request.POST, user=request.user, algorithm=algorithm)
    spec = get_algorithm(algorithm)
    context: dict[str, Any] = {}
    if not form.is_valid():
        problems = [f"{form[k].label if k in form.fields else k}: {' '.join(v)}"
                    for k, v in form.errors.items() if k != "name"]
        if problems:
            context["problem"] = "; ".join(problems)
    if "problem" not in context:
        try:
            plan = run_plan(owner=request.user, algorithm=algorithm,
                            dataset_id=getattr(form.cleaned_data.get("dataset"), "pk", None),
                            base_model=form.cleaned_data.get("base_model"),
                            rewards=rewards_from_post(request.POST) if spec and
                            spec.uses_rewards else [],
                            hyperparameters=form.hyperparameters())
            found = run_estimate(owner=request.user, plan=plan)
            total = sum(found["parts"].values()) or 1
            context |= {"estimate": found, "bars": [
                (PART_LABELS.get(k, k), mb, round(100 * mb / total, 1))
                for k, mb in found["parts"].items() if mb > 0]}
        except ServiceError as exc:
            context["problem"] = exc.detail
    return render(request, "runs/_estimate.html", context)


@login_required
@require_POST
def reward_test_fragment(request: HttpRequest) -> HttpResponse:
    """The launch form's "Test rewards" panel: its reward rows scored on a pasted sample."""
    post = request.POST
    sample = {"prompt": post.get("test-prompt", ""), "completion": post.get("test-completion", "")}
    if post.get("test-answer", "").strip():
        sample["answer"] = post["test-answer"].strip()
    context: dict[str, Any] = {}
    try:
        context["result"] = rewards_score(rewards=rewards_from_post(post), samples=[sample])
    except ServiceError as exc:
        context["problem"] = exc.detail
    return render(request, "runs/_reward_test.html", context)


@login_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    step, samples = selectors.run_samples(run=run)
    return render(request, "runs/detail.html", {
        "run": run, "samples": samples, "sample_step": step,
        "summary": selectors.run_summary(run=run),
        "reward_key": run.spec.reward_key if run.spec else "reward/mean",
        **_status_context(run),
        "sample_steps": selectors.run_sample_steps(run=run),
        "checkpoints": selectors.checkpoint_list(run=run),
        "children": selectors.run_children(run=run),
        "chart_catalog": chart_catalog().as_json(),
        "config_json": json.dumps({"rewards": run.rewards,
                                   "hyperparameters": run.hyperparameters}, indent=2),
    })


@login_required
def run_samples_fragment(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    raw = request.GET.get("step", "")
    step, samples = selectors.run_samples(run=run, step=int(raw) if raw.isdigit() else None)
    return render(request, "runs/detail.html#samples", {
        "run": run, "samples": samples, "sample_step": step,
        "sample_steps": selectors.run_sample_steps(run=run)})


@login_required
def run_checkpoints_fragment(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    return render(request, "runs/detail.html#checkpoints", {
        "run": run, "checkpoints": selectors.checkpoint_list(run=run),
        "children": selectors.run_children(run=run)})


@login_required
@require_POST
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    try:
        run = services.run_cancel(run=run)
    except ServiceError as exc:
        messages.error(request, exc.detail)
    if request.htmx:
        return render(request, "runs/detail.html#status", {
            "run": run, "summary": selectors.run_summary(run=run), **_status_context(run)})
    return redirect("runs:detail", run_id=run.pk)


def _status_context(run: Run) -> dict:
    return {"attempts": list(run.attempts.all()),
            "last_checkpoint": selectors.checkpoint_list(run=run).first(),
            "queue": queue_place(job=run, viewer_id=run.owner_id),
            "split": selectors.reward_model_split(run=run),
            "eval_min_pairs": EVAL_MIN_PAIRS}


@login_required
def run_status_fragment(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    return render(request, "runs/detail.html#status", {
        "run": run, "summary": selectors.run_summary(run=run), **_status_context(run)})


@login_required
@require_POST
def run_update(request: HttpRequest, run_id: int) -> HttpResponse:
    """Tags and notes from the run page's form; errors come back beside the form."""
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    errors: dict[str, str] = {}
    try:
        run = services.run_update(run=run, tags=request.POST.get("tags", ""),
                                  notes=request.POST.get("notes", ""))
    except ServiceError as exc:
        errors = exc.fields or {"tags": exc.detail}
    if request.htmx:  # errors too come with 200: htmx swaps no 4xx answer into the page
        return render(request, "runs/detail.html#notes", {"run": run, "notes_errors": errors})
    for message in errors.values():
        messages.error(request, message)
    return redirect("runs:detail", run_id=run.pk)


@login_required
@require_POST
def run_delete(request: HttpRequest, run_id: int) -> HttpResponse:
    """Delete an ended run and its files; a refusal (running, or its checkpoints in use) is
    shown on the run page with the dependants named."""
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    try:
        deletion.run_delete(run=run)
    except ServiceError as exc:
        messages.error(request, exc.detail)
        return redirect("runs:detail", run_id=run.pk)
    messages.success(request, f"Run '{run.name}' is deleted, with its metrics, samples and "
                              "checkpoint files.")
    return redirect("runs:list")
