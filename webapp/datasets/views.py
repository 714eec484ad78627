"""Dataset pages: the list with the upload form, and one dataset with its preview."""
from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.datasets import hub, selectors, services
from webapp.datasets.forms import KIND_HELP, DatasetUploadForm
from webapp.datasets.models import Dataset, DatasetKind
from webapp.errors import ServiceError

LIST_LIMIT = 200


def _get_dataset_for_user(request: HttpRequest, dataset_id: int) -> Dataset:
    return selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id)


@login_required
@require_GET
def dataset_list_page(request: HttpRequest) -> HttpResponse:
    return _render_list(request, DatasetUploadForm())


@login_required
@require_POST
def dataset_upload(request: HttpRequest) -> HttpResponse:
    form = DatasetUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render_list(request, form, status=422)
    upload = form.cleaned_data["file"]
    name = form.cleaned_data["name"] or services.name_from_filename(upload.name)
    try:
        dataset = services.dataset_create(owner=request.user, name=name,
                                          kind=form.cleaned_data["kind"], upload=upload)
    except ServiceError as exc:
        form.add_service_error(exc)
        return _render_list(request, form, status=exc.status, error=exc)
    return redirect("datasets:detail", dataset_id=dataset.pk)


def _columns_from_text(text: str) -> dict[str, str] | None:
    """``prompt=question, answer=answer`` as a mapping (None when blank: the kind's own)."""
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        target, _, source = pair.partition("=")
        out[target.strip()] = source.strip() or target.strip()
    return out


@login_required
@require_POST
def dataset_from_hub_page(request: HttpRequest) -> HttpResponse:
    """The upload page's hub form: the same as ``POST /api/datasets`` with JSON."""
    post = request.POST
    limit = post.get("limit", "").strip()
    try:
        dataset = hub.dataset_from_hub(
            owner=request.user, hub_id=post.get("hub_id", "").strip(),
            config=post.get("config", "").strip() or None,
            split=post.get("split", "").strip() or None, kind=post.get("kind", ""),
            columns=_columns_from_text(post.get("columns", "")),
            limit=int(limit) if limit.isdigit() else (None if not limit else -1),
            name=post.get("name", "").strip() or None)
    except ServiceError as exc:
        return _render_list(request, DatasetUploadForm(), status=exc.status, hub_error=exc,
                            hub_values=post)
    return redirect("datasets:detail", dataset_id=dataset.pk)


def _render_list(request: HttpRequest, form: DatasetUploadForm, *, status: int = 200,
                 error: ServiceError | None = None, hub_error: ServiceError | None = None,
                 hub_values: Any = None) -> HttpResponse:
    return render(request, "datasets/list.html", {
        "datasets": selectors.dataset_list(user=request.user, limit=LIST_LIMIT),
        "form": form,
        "kind_help": list(KIND_HELP.items()),
        "error": error, "hub_error": hub_error, "hub": hub_values or {},
        "kinds": DatasetKind.values,
    }, status=status)


@login_required
@require_GET
def dataset_detail_page(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _get_dataset_for_user(request, dataset_id)
    preview = [[_cell(row.get(column)) for column in dataset.columns]
               for row in dataset.preview]
    return render(request, "datasets/detail.html", {
        "dataset": dataset, "preview": preview,
        "dependants": selectors.dataset_dependants(dataset=dataset)})


def _cell(value: Any) -> dict[str, Any]:
    """How the preview table shows one value: chat messages as ``role: content`` lines, lists
    of texts as a numbered list, anything else as text."""
    if isinstance(value, list) and value and all(
            isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return {"messages": value}
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return {"entries": value}
    if value is None:
        return {"text": "", "empty": True}
    if isinstance(value, str):
        return {"text": value}
    return {"text": json.dumps(value, ensure_ascii=False)}


@login_required
@require_POST
def dataset_delete(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _get_dataset_for_user(request, dataset_id)
    try:
        services.dataset_delete(dataset=dataset)
    except ServiceError as exc:
        messages.error(request, exc.detail)
        return redirect("datasets:detail", dataset_id=dataset.pk)
    messages.success(request, f"Dataset '{dataset.name}' is deleted, its file too.")
    return redirect("datasets:list")
