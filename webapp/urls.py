from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path

from webapp import views
from webapp.api import api
from webapp.runs import sse

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("webapp.accounts.urls")),
    path("datasets/", include("webapp.datasets.urls")),
    path("runs/", include("webapp.runs.urls")),
    path("labeling/", include("webapp.labeling.urls")),
    # Server-sent events stream for hours, so they bypass the API router (plain Django view).
    path("api/runs/<int:run_id>/events", sse.run_events, name="run-events"),
    path("api/", api.urls),
]


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "not_found", "detail": "No such API path."}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"error": "server_error",
                         "detail": "Something went wrong on the server; it has been logged."},
                        status=500)
