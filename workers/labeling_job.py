"""Generate a ranking batch: claim it, load the model, sample K responses per prompt a few
prompts at a time, store each chunk as it is done, record the outcome.

torch and the engine are imported inside :func:`_generate`, in the worker's child process.
"""
from __future__ import annotations

import itertools
import json
import logging
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from django.db import close_old_connections

from webapp.labeling import services
from webapp.labeling.models import Batch, BatchStatus
from webapp.runs.registry import model_resolve
from workers.heartbeat import Heartbeat

log = logging.getLogger(__name__)
PROMPTS_PER_CHUNK = 4
MAX_PROMPT_TOKENS = 1024


def run_generation(batch_id: int, *, worker: str, task_id: str = "") -> None:
    close_old_connections()
    attempt = services.batch_claim(batch_id=batch_id, worker=worker, task_id=task_id)
    if attempt is None:
        log.info("batch %s is not waiting for a worker (claimed elsewhere or finished)",
                 batch_id)
        return
    try:
        with Heartbeat(f"batch-{batch_id}",
                       lambda: services.batch_heartbeat(batch_id=batch_id, attempt=attempt)):
            _generate(batch_id, attempt)
    except services.StaleAttempt as exc:
        log.warning("%s", exc)
        return
    except Exception as exc:
        log.exception("generation of batch %s failed", batch_id)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        services.batch_finish(batch_id=batch_id, attempt=attempt, status=str(BatchStatus.FAILED),
                              error=f"{detail}\n\n{traceback.format_exc(limit=8)}")
        return
    services.batch_finish(batch_id=batch_id, attempt=attempt, status=str(BatchStatus.READY))


def _prompts(batch: Batch) -> list[tuple[int, Any]]:
    """(index, prompt) of the rows to answer: the first ``items_expected`` of the dataset,
    minus those a previous attempt already stored."""
    done = set(batch.items.values_list("index", flat=True))
    prompts = []
    with open(batch.dataset.file_path, encoding="utf-8") as fh:  # the first rows only
        lines = (line for line in fh if line.strip())
        for i, line in enumerate(itertools.islice(lines, batch.items_expected)):
            if i not in done:
                prompts.append((i, json.loads(line)["prompt"]))
    return prompts


def _generate(batch_id: int, attempt: int) -> None:
    # torch is imported here, in the worker's child process, never at start-up
    from training import modelhub, rollout, runtime

    batch = Batch.objects.select_related("dataset", "owner").get(pk=batch_id)
    entry = model_resolve(user=batch.owner, model_id=batch.model, field="model",
                          kinds=("policy",))
    prompts = _prompts(batch)
    device = runtime.resolve_device("auto")
    dtype = runtime.resolve_dtype("auto", device)
    tokenizer = modelhub.load_tokenizer(entry.path)
    model = modelhub.load_causal_lm(entry.path, dtype=dtype, device=device)
    runtime.seed_everything(batch.seed)

    def stop() -> bool:
        return not services.batch_is_current(batch_id=batch_id, attempt=attempt)

    def sample(chunk: Sequence[Any]) -> list[str]:
        rendered = [rollout.render_prompt(tokenizer, p, use_chat_template=True) for p in chunk]
        out = rollout.generate(model, tokenizer, rendered, group_size=batch.responses_per_prompt,
                               max_new_tokens=batch.max_new_tokens,
                               temperature=batch.temperature, top_p=batch.top_p,
                               max_prompt_tokens=MAX_PROMPT_TOKENS, should_stop=stop)
        if out.stopped:
            raise services.StaleAttempt(f"batch {batch_id} attempt {attempt} was stopped")
        return out.completions

    _generate_chunks(batch_id, attempt, batch.responses_per_prompt, prompts, sample,
                     rollout.prompt_text)


def _generate_chunks(batch_id: int, attempt: int, k: int, prompts: list[tuple[int, Any]],
                     sample: Callable[[Sequence[Any]], list[str]],
                     as_text: Callable[[Any], str]) -> None:
    """Sample and store ``PROMPTS_PER_CHUNK`` prompts at a time, so items appear (and can be
    ranked) while the rest are still being generated."""
    for start in range(0, len(prompts), PROMPTS_PER_CHUNK):
        chunk = prompts[start:start + PROMPTS_PER_CHUNK]
        completions = sample([prompt for _, prompt in chunk])  # K adjacent per prompt
        items = [{"index": index, "prompt": prompt, "prompt_text": as_text(prompt),
                  "responses": completions[j * k:(j + 1) * k]}
                 for j, (index, prompt) in enumerate(chunk)]
        services.batch_record_items(batch_id=batch_id, attempt=attempt, items=items)
