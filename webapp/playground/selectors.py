"""Reads of playground sessions. A session is one prompt (a hidden one-row dataset) and the
playground batches answering it: the model a person picked and, for a checkpoint, the model
its run started from. It is known by the first batch's id; only its owner sees it."""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404

from webapp.datasets.models import Dataset
from webapp.ids import parse_id
from webapp.labeling.models import Batch, BatchOrigin, Response

SESSIONS_SHOWN = 10


@dataclass
class Column:
    batch: Batch
    responses: list[Response]
    role: str  # "picked" | "base"


@dataclass
class Session:
    id: int
    dataset: Dataset
    prompt: str
    columns: list[Column]

    @property
    def is_generating(self) -> bool:
        return any(c.batch.is_generating for c in self.columns)


def _session(dataset: Dataset) -> Session:
    batches = list(Batch.objects.filter(dataset=dataset, origin=BatchOrigin.PLAYGROUND)
                   .order_by("pk"))
    responses: dict[int, list[Response]] = {b.pk: [] for b in batches}
    for r in Response.objects.filter(item__batch__in=batches).select_related("item") \
            .order_by("index"):
        responses[r.item.batch_id].append(r)
    columns = [Column(b, responses[b.pk], "picked" if i == 0 else "base")
               for i, b in enumerate(batches)]
    prompt = (dataset.preview[0].get("prompt") if dataset.preview else "") or ""
    return Session(id=batches[0].pk if batches else 0, dataset=dataset,
                   prompt=prompt if isinstance(prompt, str) else str(prompt), columns=columns)


def playground_session_get(*, user: AbstractBaseUser | AnonymousUser,
                           session_id: int | str) -> Session:
    """The session whose first batch is ``session_id``, if it is the user's."""
    batch = Batch.objects.filter(pk=parse_id(session_id, what="session"), owner_id=user.pk,
                                 origin=BatchOrigin.PLAYGROUND).select_related("dataset").first()
    if batch is None or batch.dataset is None:
        raise Http404("No such playground session.")
    session = _session(batch.dataset)
    if session.id != batch.pk:
        raise Http404("No such playground session.")
    return session


def playground_sessions(*, user: AbstractBaseUser | AnonymousUser,
                        limit: int = SESSIONS_SHOWN) -> list[Session]:
    """The user's latest sessions, newest first."""
    datasets = (Dataset.objects.filter(owner_id=user.pk, hidden=True,
                                       labeling_batches__origin=BatchOrigin.PLAYGROUND)
                .distinct().order_by("-created_at", "-id")[:limit])
    return [s for s in (_session(d) for d in datasets) if s.columns]
