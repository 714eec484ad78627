"""``GET /api/workers`` (staff): the workers up now, their queues and devices, and the jobs
each runs (:mod:`webapp.workers_presence`)."""
from __future__ import annotations

from django.http import HttpRequest
from ninja import Field, Router, Schema

from webapp.errors import Forbidden
from webapp.workers_presence import workers_list

router = Router(tags=["workers"])


class DeviceOut(Schema):
    type: str = Field(description="cuda | cpu")
    index: int
    name: str
    total_mb: int
    free_mb: int
    bf16: bool
    capability: str | None = Field(None, description="CUDA compute capability, 9.0 on an H100")
    threads: int | None = Field(None, description="for the CPU: the threads a run may use")


class WorkerOut(Schema):
    name: str
    queues: list[str]
    last_seen: float = Field(description="Unix time of its last presence")
    devices: list[DeviceOut]
    running: list[str] = Field(description="run-<id> and batch-<id> it runs now")


@router.get("/workers", response=list[WorkerOut], openapi_extra={"x-staff-only": True})
def list_workers(request: HttpRequest):
    """Every worker up now (each says so every few seconds), staff only."""
    if not request.user.is_staff:
        raise Forbidden("The workers list is for staff users; ask an administrator.")
    return workers_list()
