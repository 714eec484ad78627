"""Model ids as a person reads them: ``ckpt-5`` is "run *smoke-1*, step 4", linked to the run;
a bundled or local model is its id, which is its name. The API keeps the ids."""
from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from webapp.runs.models import Checkpoint

CHECKPOINT_PREFIX = "ckpt-"


@dataclass(frozen=True)
class ModelRef:
    model_id: str
    run_name: str | None = None
    step: int | None = None
    url: str | None = None

    @property
    def text(self) -> str:
        if self.run_name is None:
            return self.model_id
        return f"run {self.run_name}, step {self.step}"


def checkpoint_pk(model_id: str) -> int | None:
    rest = model_id.removeprefix(CHECKPOINT_PREFIX)
    if rest == model_id or not rest.isascii() or not rest.isdigit() or len(rest) > 18:
        return None
    return int(rest)


def model_refs(model_ids: list[str], *, owner_id: int | None) -> dict[str, ModelRef]:
    """One query for every checkpoint among ``model_ids`` that ``owner_id`` may see; the
    others read as their ids (a deleted checkpoint too)."""
    pks = {pk for pk in map(checkpoint_pk, model_ids) if pk is not None}
    found = {c.pk: c for c in Checkpoint.objects.filter(pk__in=pks, run__owner_id=owner_id)
             .select_related("run")} if pks else {}
    out = {}
    for model_id in model_ids:
        c = found.get(checkpoint_pk(model_id) or 0)
        out[model_id] = (ModelRef(model_id, c.run.name, c.step,
                                  reverse("runs:detail", args=[c.run_id]))
                         if c is not None else ModelRef(model_id))
    return out
