from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from webapp.datasets.selectors import dataset_list
from webapp.runs.selectors import run_list
from webapp.runs.views import RUN_COLUMNS


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {
        "runs": run_list(user=request.user, limit=10), "columns": RUN_COLUMNS,
        "datasets": dataset_list(user=request.user, limit=10),
    })
