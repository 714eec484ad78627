"""The project's URLs plus two that fail on purpose, for tests of the 500 answers."""
from django.urls import path

from webapp.urls import handler400, handler403, handler404, handler500, urlpatterns  # noqa: F401


def fail(request):
    raise RuntimeError("a bug the test put here")


urlpatterns = [path("boom/", fail), path("api/boom", fail), *urlpatterns]
