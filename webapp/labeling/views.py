"""Labeling pages: the batch list with the "new batch" form, the batch page (generation
progress, annotators, agreement, export, dataset) and the ranking page."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from webapp.datasets.models import Dataset
from webapp.errors import ServiceError
from webapp.labeling import selectors, services
from webapp.labeling.forms import BatchForm
from webapp.labeling.models import Batch
from webapp.waiting import queue_place

LIST_LIMIT = 200
# The ranking page's keys, shown on the page (the JS implements them).
KEYS = [("1 … K", "pick a response"),
        ("← / →", "move the picked response one place toward best (left) or worst (right)"),
        ("↑ / ↓", "move it one row up (better) or down (worse)"),
        ("t", "tie the picked response with the one before it"),
        ("Enter", "submit the ranking (twice if you left the order as shown)"),
        ("s", "skip this item"), ("u", "undo your last ranking")]


def _render_list(request: HttpRequest, form: BatchForm, *, status: int = 200,
                 error: ServiceError | None = None) -> HttpResponse:
    return render(request, "labeling/list.html", {
        "batches": selectors.batch_list(user=request.user, limit=LIST_LIMIT),
        "form": form, "error": error}, status=status)


@login_required
@require_GET
def batch_list_page(request: HttpRequest) -> HttpResponse:
    initial = {k: request.GET[k] for k in ("dataset", "model") if k in request.GET}
    return _render_list(request, BatchForm(user=request.user, initial=initial))


@login_required
@require_POST
def batch_new(request: HttpRequest) -> HttpResponse:
    form = BatchForm(request.POST, user=request.user)
    if not form.is_valid():
        return _render_list(request, form, status=422)
    data = form.cleaned_data
    try:
        batch = services.batch_create(
            owner=request.user, name=data["name"], dataset_id=data["dataset"].pk,
            model=data["model"], responses_per_prompt=data["responses_per_prompt"],
            temperature=data["temperature"], top_p=data["top_p"],
            max_new_tokens=data["max_new_tokens"], max_prompts=data["max_prompts"],
            shared=data["shared"])
    except ServiceError as exc:
        form.add_service_error(exc)
        return _render_list(request, form, status=exc.status, error=exc)
    messages.success(request, f"Batch '{batch.name}' is queued; a worker generates its "
                              "responses.", extra_tags="launch")
    return redirect("labeling:detail", batch_id=batch.pk)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    return "ETA " + (f"{minutes}m " if minutes else "") + f"{secs}s"


def _status_context(request: HttpRequest, batch: Batch) -> dict[str, Any]:
    progress = selectors.batch_progress(batch=batch, user=request.user)
    eta = selectors.generation_eta_s(batch=batch, items_total=progress.items_total)
    return {"batch": batch, "progress": progress, "eta": format_eta(eta),
            "is_owner": batch.owner_id == request.user.pk,
            "queue": queue_place(job=batch, viewer_id=request.user.pk)}


@login_required
@require_GET
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = selectors.batch_get_for_user(user=request.user, batch_id=batch_id)
    context = _status_context(request, batch)
    context["agreement"] = selectors.batch_agreement(batch=batch)
    context["made_datasets"] = batch.datasets.filter(owner_id=request.user.pk)
    return render(request, "labeling/detail.html", context)


@login_required
@require_GET
def batch_status_fragment(request: HttpRequest, batch_id: int) -> HttpResponse:
    """Polled every 2 s by the batch page while the batch generates; the delete card comes
    along (out of band), so what it says follows the batch's state."""
    batch = selectors.batch_get_for_user(user=request.user, batch_id=batch_id)
    return render(request, "labeling/detail.html#status",
                  _status_context(request, batch) | {"oob": True})


@login_required
@require_GET
def batch_rank(request: HttpRequest, batch_id: int) -> HttpResponse:
    """One item to rank: the one named by ``?item=`` (after an undo) if you have not ranked
    it, else the next one; "all done" when none is left."""
    batch = selectors.batch_get_for_user(user=request.user, batch_id=batch_id)
    item = None
    if request.GET.get("item"):
        item = selectors.unranked_item_for_user(batch=batch, user=request.user,
                                                item_id=request.GET["item"])
    if item is None:
        item = selectors.next_item_for_user(batch=batch, user=request.user)
    progress = selectors.batch_progress(batch=batch, user=request.user)
    done_share = (100 * progress.items_ranked_by_you // progress.items_total
                  if progress.items_total else 0)
    return render(request, "labeling/rank.html", {
        "batch": batch, "item": item, "responses": list(item.responses.all()) if item else [],
        "progress": progress, "done_share": done_share, "keys": KEYS,
        "item_number": selectors.item_number(item.index) if item else None,
        "is_owner": batch.owner_id == request.user.pk})


def _owned(request: HttpRequest, batch_id: int) -> Batch:
    return selectors.batch_get_for_owner(user=request.user, batch_id=batch_id)


def _dataset_from(request: HttpRequest, batch: Batch, *, reuse: bool = False
                  ) -> tuple[Dataset | None, bool]:
    """The batch's rankings as a preferences dataset (new, or with ``reuse`` the one made
    from the same rankings before), or None with the reason shown."""
    try:
        return services.batch_dataset_create(batch=batch, reuse=reuse)
    except ServiceError as exc:
        messages.error(request, exc.detail)
        return None, False


@login_required
@require_POST
def batch_make_dataset(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _owned(request, batch_id)
    dataset, _ = _dataset_from(request, batch)
    if dataset is None:
        return redirect("labeling:detail", batch_id=batch.pk)
    messages.success(request, f"Dataset '{dataset.name}' holds {dataset.rows} preference "
                              "pairs.")
    return redirect("datasets:detail", dataset_id=dataset.pk)


@login_required
@require_POST
def batch_fit_reward_model(request: HttpRequest, batch_id: int) -> HttpResponse:
    """Open the reward-model launch form on the dataset of these rankings: the one made
    from the same rankings before, or a new one when they have changed."""
    batch = _owned(request, batch_id)
    dataset, new = _dataset_from(request, batch, reuse=True)
    if dataset is None:
        return redirect("labeling:detail", batch_id=batch.pk)
    made = "is ready" if new else "(made earlier from these same rankings) is reused"
    messages.success(request, f"Dataset '{dataset.name}' ({dataset.rows} pairs) {made}; "
                              "pick the backbone and launch.")
    query = urlencode({"algorithm": "reward_model", "dataset": dataset.pk,
                       "name": f"RM on {batch.name}"[:200]})
    return redirect(f"{reverse('runs:new')}?{query}")


@login_required
@require_POST
def batch_delete(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _owned(request, batch_id)
    try:
        services.batch_delete(batch=batch)
    except ServiceError as exc:
        messages.error(request, exc.detail)
        return redirect("labeling:detail", batch_id=batch.pk)
    messages.success(request, f"Batch '{batch.name}' is deleted.")
    return redirect("labeling:list")
