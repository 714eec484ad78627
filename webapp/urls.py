from django.contrib import admin
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path

from webapp import views
from webapp.api import api
from webapp.middleware import body_too_large_detail, json_error
from webapp.runs import sse

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("webapp.accounts.urls")),
    path("datasets/", include("webapp.datasets.urls")),
    path("runs/", include("webapp.runs.urls")),
    path("labeling/", include("webapp.labeling.urls")),
    path("models/", include("webapp.runs.registry_urls")),
    path("workers/", views.workers_page, name="workers"),
    path("playground/", include("webapp.playground.urls")),
    # Server-sent events stream for hours, so they bypass the API router (plain Django view).
    path("api/runs/<int:run_id>/events", sse.run_events, name="run-events"),
    path("api/", api.urls),
]


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "not_found", "detail": "No such API path."}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's refusals outside the API's handlers (a disallowed host, a body read by a
    middleware): JSON under /api/, Django's page elsewhere."""
    if not request.path.startswith("/api/"):
        from django.views.defaults import bad_request

        return bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return json_error(413, "too_large", body_too_large_detail())
    return json_error(400, "bad_request", f"The request was refused: {exception}")


def handler403(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not request.path.startswith("/api/"):
        from django.views.defaults import permission_denied

        return permission_denied(request, exception)
    return json_error(403, "forbidden", str(exception) or "Not allowed.")


def handler500(request: HttpRequest) -> HttpResponse:
    """JSON under /api/; elsewhere the site's page with its navigation, or, when even that
    cannot be drawn (the database is down, say), a bare page saying the same."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "server_error",
                             "detail": "Something went wrong on the server; it has been "
                                       "logged."}, status=500)
    from django.shortcuts import render

    try:
        return render(request, "500.html", status=500)
    except Exception:
        return HttpResponse("<!doctype html><title>Server error</title><h1>Something went "
                            "wrong</h1><p>The error has been logged. <a href=\"/\">Start "
                            "page</a></p>", status=500)
