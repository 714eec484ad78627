"""Playground pages: the prompt form with recent sessions, one session's completions side
by side (polled while a worker writes them), sending ticked ones to ranking, deleting."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.errors import ServiceError
from webapp.playground import selectors, services
from webapp.playground.forms import PlaygroundForm
from webapp.playground.selectors import Session


def _get_session_for_user(request: HttpRequest, session_id: int) -> Session:
    return selectors.playground_session_get(user=request.user, session_id=session_id)


def _render_form(request: HttpRequest, form: PlaygroundForm, *, status: int = 200,
                 error: str = "") -> HttpResponse:
    return render(request, "playground/page.html", {
        "form": form, "error": error,
        "sessions": selectors.playground_sessions(user=request.user)}, status=status)


@login_required
@require_GET
def playground_page(request: HttpRequest) -> HttpResponse:
    initial = {"model": request.GET["model"]} if "model" in request.GET else {}
    return _render_form(request, PlaygroundForm(user=request.user, initial=initial))


@login_required
@require_POST
def playground_generate(request: HttpRequest) -> HttpResponse:
    form = PlaygroundForm(request.POST, user=request.user)
    if not form.is_valid():
        return _render_form(request, form, status=422)
    data = form.cleaned_data
    try:
        batch = services.playground_generate(
            owner=request.user, model=data["model"], prompt=data["prompt"],
            responses_per_prompt=data["responses_per_prompt"],
            max_new_tokens=data["max_new_tokens"], temperature=data["temperature"])
    except ServiceError as exc:
        for name, message in (exc.fields or {}).items():
            if name in form.fields:
                form.add_error(name, message)
        return _render_form(request, form, status=exc.status, error=exc.detail)
    return redirect("playground:session", session_id=batch.pk)


@login_required
@require_GET
def playground_session_page(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _get_session_for_user(request, session_id)
    template = "playground/session.html#columns" if request.htmx else "playground/session.html"
    excerpt = " ".join(session.prompt.split())[:60]
    return render(request, template, {"session": session,
                                      "batch_name": f"Playground: {excerpt}"})


@login_required
@require_POST
def playground_send(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _get_session_for_user(request, session_id)
    try:
        batch = services.playground_to_batch(
            owner=request.user, session=session, response_ids=request.POST.getlist("response"),
            name=request.POST.get("name", ""), shared=request.POST.get("shared") == "on")
    except ServiceError as exc:
        messages.error(request, exc.detail)
        return redirect("playground:session", session_id=session.id)
    messages.success(request, f"Batch '{batch.name}' holds the {batch.responses_per_prompt} "
                              "completions you ticked; rank them.")
    return redirect("labeling:rank", batch_id=batch.pk)


@login_required
@require_POST
def playground_delete(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _get_session_for_user(request, session_id)
    try:
        services.playground_delete(session=session)
    except ServiceError as exc:
        messages.error(request, exc.detail)
        return redirect("playground:session", session_id=session.id)
    messages.success(request, "The playground session is deleted.")
    return redirect("playground:page")
