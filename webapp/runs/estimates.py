"""Will it fit? A run's peak memory per device (:mod:`training.estimate`) judged against the
devices the workers up now report (:mod:`webapp.workers_presence`): ``POST
/api/runs/estimate`` and the launch form show it as settings change, and a run that no worker
up now could hold is refused before it waits in a queue for nothing."""
from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from training.estimate import (
    CUDA_CONTEXT_MB,
    Estimate,
    ModelShape,
    estimate,
    prompt_tokens_of,
    response_tokens_of,
)
from training.model_files import Refused, read_config
from training.reward_types import model_references
from webapp.errors import Invalid
from webapp.runs.plans import RunPlan
from webapp.runs.registry import ModelEntry, model_card, model_resolve
from webapp.workers_presence import workers_list

log = logging.getLogger(__name__)
SHRINK = ("LoRA (lora_rank), bf16 precision, gradient checkpointing, a smaller "
          "micro_batch_size, fewer prompts per step or a smaller group, fewer new tokens")


def _shape(entry: ModelEntry, field: str) -> ModelShape:
    card = model_card(entry)
    if card is None:
        raise Invalid(f"Model '{entry.id}' has no readable config and weights to size a run by.",
                      fields={field: "no model card"})
    try:
        return ModelShape.from_config(read_config(entry.path), card.parameters)
    except Refused as exc:
        raise Invalid(f"Model '{entry.id}': {exc}.", fields={field: "no model card"}) from None


def _chars(value: Any) -> int:
    if isinstance(value, list):  # chat messages
        return sum(len(str(m.get("content", ""))) for m in value if isinstance(m, dict))
    return len(str(value or ""))


def _response_chars(row: dict[str, Any]) -> list[int]:
    """Preference pairs' chosen and rejected, ranked lists' responses."""
    found = [_chars(row.get(k)) for k in ("chosen", "rejected") if k in row]
    responses = row.get("responses")
    if isinstance(responses, list):
        found += [_chars(r) for r in responses]
    return found


def _estimates(owner: AbstractBaseUser, plan: RunPlan
               ) -> tuple[Any, ModelShape, list[ModelShape], dict[str, int]]:
    policy = _shape(plan.entry, "base_model")
    rewards = [_shape(model_resolve(user=owner, model_id=model_id, field=f"rewards[{i}]",
                                    kinds=kind.model_kinds), f"rewards[{i}]")
               for i, model_id, kind in model_references(plan.rewards)]
    config = plan.spec.config(**plan.hyperparameters)
    card = model_card(plan.entry)
    rows = [r for r in plan.dataset.preview if isinstance(r, dict)]
    tokens = {"prompt_tokens": prompt_tokens_of(
        [_chars(r.get("prompt")) for r in rows], chat_template=bool(
            card and card.chat_template and getattr(config, "use_chat_template", True))),
        "response_tokens": response_tokens_of([c for r in rows for c in _response_chars(r)])}
    return config, policy, rewards, tokens


def _device_estimate(config: Any, policy: ModelShape, rewards: list[ModelShape],
                     tokens: dict[str, int], device: dict[str, Any]) -> tuple[Estimate, float]:
    """The estimate on one reported device, and the memory that device needs for it."""
    kind = "cuda" if device.get("type") == "cuda" else "cpu"
    found = estimate(config, policy, device=kind, bf16=bool(device.get("bf16")),
                     reward_models=rewards, **tokens)
    return found, found.peak_mb + (CUDA_CONTEXT_MB if kind == "cuda" else 0)


def run_estimate(*, owner: AbstractBaseUser, plan: RunPlan) -> dict[str, Any]:
    """The estimate for the run ``plan`` describes, on the workers' devices: the peak per
    device and its parts (on the first GPU a worker reports, else the CPU), the workers with a
    device that can hold it, and a warning when none can (or none is up)."""
    config, policy, rewards, tokens = _estimates(owner, plan)
    workers = workers_list()
    fits, per_worker, largest = [], {}, 0
    shown: Estimate | None = None
    gpus = [d for w in workers for d in w.get("devices", []) if d.get("type") == "cuda"]
    reference = gpus[0] if gpus else {"type": "cpu", "bf16": True}
    shown, _ = _device_estimate(config, policy, rewards, tokens, reference)
    for worker in workers:
        best = None
        for device in worker.get("devices", []):
            found, needs = _device_estimate(config, policy, rewards, tokens, device)
            total = int(device.get("total_mb", 0))
            largest = max(largest, total)
            if needs <= total and best is None:
                best = {"device": f"{device.get('type')}:{device.get('index', 0)}",
                        "peak_mb": round(found.peak_mb), "total_mb": total}
        per_worker[worker["name"]] = best
        if best is not None:
            fits.append(worker["name"])
    warning = None
    if not workers:
        warning = "No worker is up to judge against; the run waits in the queue until one is."
    elif not fits:
        warning = (f"No worker's device can hold an estimated {shown.peak_mb:,.0f} MB (the "
                   f"largest has {largest:,} MB). Try {SHRINK}.")
    return shown.as_json() | {"device": "cuda" if gpus else "cpu",
                              "prompt_tokens": tokens["prompt_tokens"],
                              "fits": fits, "per_worker": per_worker, "warning": warning}


def refuse_if_too_large(*, owner: AbstractBaseUser, plan: RunPlan) -> None:
    """Invalid (422) when workers are up and none has a device that can hold the run; with no
    worker up the run may wait for one."""
    try:
        found = run_estimate(owner=owner, plan=plan)
    except Invalid:
        return  # no card to size it by (a checkpoint without files): the worker will say
    except Exception:  # an estimate is advice: a fault in it must not stop a launch
        log.exception("could not estimate the memory of a %s run", plan.spec.id)
        return
    if found["warning"] and not found["fits"] and found["per_worker"]:
        raise Invalid(found["warning"], fields={"base_model": "too large for every worker"})
