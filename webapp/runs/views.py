"""Pages for runs: the list, the launch form, and the live run page with its fragments."""
from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from webapp.errors import ServiceError
from webapp.runs import selectors, services
from webapp.runs.forms import (
    ALGORITHMS,
    MAX_REWARD_ROWS,
    PRESETS,
    REWARD_TYPES,
    RunForm,
    rewards_from_post,
)
from webapp.runs.registry import model_list

DEFAULT_REWARDS = [{"type": "length", "target": 200, "weight": 1.0}]


@login_required
def run_list_page(request: HttpRequest) -> HttpResponse:
    return render(request, "runs/list.html", {"runs": selectors.run_list(user=request.user,
                                                                          limit=200)})


def _form_context(form: RunForm, rewards: list[dict], errors: dict[str, str] | None = None,
                  detail: str = "") -> dict:
    reward_models = [m for m in model_list(user=form.user) if m.kind == "reward"]
    return {"form": form, "rewards": rewards or DEFAULT_REWARDS, "reward_types": REWARD_TYPES,
            "algorithm": form.algorithm, "algorithms": ALGORITHMS,
            "algorithm_label": dict(ALGORITHMS)[form.algorithm],
            "reward_models": reward_models, "max_reward_rows": MAX_REWARD_ROWS,
            "presets_json": json.dumps(PRESETS[form.algorithm]),
            "reward_errors": {k: v for k, v in (errors or {}).items()
                              if k.startswith("rewards")}, "detail": detail}


def _algorithm(request: HttpRequest) -> str:
    value = request.POST.get("algorithm") or request.GET.get("algorithm") or "grpo"
    return value if value in dict(ALGORITHMS) else "grpo"


@login_required
def run_new(request: HttpRequest) -> HttpResponse:
    algorithm = _algorithm(request)
    if request.method != "POST":
        form = RunForm(user=request.user, algorithm=algorithm, initial=_initial_from(request))
        return render(request, "runs/new.html", _form_context(form, DEFAULT_REWARDS))
    form = RunForm(request.POST, user=request.user, algorithm=algorithm)
    rewards = rewards_from_post(request.POST) if algorithm != "reward_model" else []
    if not form.is_valid():
        return render(request, "runs/new.html", _form_context(form, rewards), status=422)
    try:
        run = services.run_create(
            owner=request.user, name=form.cleaned_data["name"], algorithm=algorithm,
            dataset_id=form.cleaned_data["dataset"].pk,
            base_model=form.cleaned_data["base_model"], rewards=rewards,
            hyperparameters=form.hyperparameters())
    except ServiceError as exc:
        for key, message in (exc.fields or {}).items():
            name = "hp_" + key.split(".", 1)[1] if key.startswith("hyperparameters.") else key
            if name in form.fields:
                form.add_error(name, message)
        return render(request, "runs/new.html",
                      _form_context(form, rewards, exc.fields, exc.detail), status=exc.status)
    messages.success(request, f"Run '{run.name}' is queued.")
    return redirect("runs:detail", run_id=run.pk)


def _initial_from(request: HttpRequest) -> dict:
    """Pre-fill from ?dataset=&base_model= links (e.g. 'train from this checkpoint')."""
    return {k: request.GET[k] for k in ("dataset", "base_model", "name") if k in request.GET}


@login_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    step, samples = selectors.run_samples(run=run)
    return render(request, "runs/detail.html", {
        "run": run, "samples": samples, "sample_step": step,
        "summary": selectors.run_summary(run=run),
        "sample_steps": selectors.run_sample_steps(run=run),
        "checkpoints": selectors.checkpoint_list(run=run),
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
        "run": run, "checkpoints": selectors.checkpoint_list(run=run)})


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
            "run": run, "summary": selectors.run_summary(run=run)})
    return redirect("runs:detail", run_id=run.pk)


@login_required
def run_status_fragment(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    return render(request, "runs/detail.html#status", {
        "run": run, "summary": selectors.run_summary(run=run)})
