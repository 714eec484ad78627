from __future__ import annotations

import time

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from webapp.datasets.selectors import dataset_list
from webapp.runs.selectors import run_list
from webapp.runs.views import RUN_COLUMNS
from webapp.workers_presence import workers_list


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {
        "runs": run_list(user=request.user, limit=10), "columns": RUN_COLUMNS,
        "datasets": dataset_list(user=request.user, limit=10),
    })


@login_required
def workers_page(request: HttpRequest) -> HttpResponse:
    """The workers up now, their devices and what they run (staff only)."""
    if not request.user.is_staff:
        raise PermissionDenied("The workers page is for staff users.")
    workers = workers_list()
    now = time.time()
    for worker in workers:
        worker["seen_s_ago"] = max(0, round(now - float(worker.get("last_seen", now))))
    return render(request, "workers.html", {"workers": workers})
