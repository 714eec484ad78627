"""A ranking batch made of completions the policy wrote during training.

People pick completions on the compare page (or name them through the API); those that
answer the same prompt become one item, so what a run writes feeds the next reward model.
Nothing is generated: the batch is ready to rank at once.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from webapp.errors import Invalid
from webapp.labeling.models import K_MAX, K_MIN, Batch, BatchOrigin, BatchStatus, Item, Response
from webapp.runs.models import Sample
from webapp.text import clean_name

MAX_SAMPLES = 2000
_REF_FIELDS = ("run", "step", "index")


def _canonical_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
        return None
    return value


def _references(samples: Any) -> list[tuple[int, int, int]]:
    """``[{"run", "step", "index"}, ...]`` -> (run, step, index) triples, or a 422 naming
    the first entry that is not one."""
    if not isinstance(samples, list) or len(samples) < K_MIN:
        raise Invalid(f"Send 'samples' as a list of at least {K_MIN} "
                      '{"run", "step", "index"} references.', fields={"samples": "required"})
    if len(samples) > MAX_SAMPLES:
        raise Invalid(f"Send at most {MAX_SAMPLES} samples in one batch.",
                      fields={"samples": f"at most {MAX_SAMPLES}"})
    refs: list[tuple[int, int, int]] = []
    for i, ref in enumerate(samples):
        values = [_canonical_int(ref.get(f)) if isinstance(ref, dict) else None
                  for f in _REF_FIELDS]
        if not isinstance(ref, dict) or set(ref) != set(_REF_FIELDS) or None in values:
            raise Invalid(f"samples[{i}] must be an object with the whole numbers "
                          "'run', 'step' and 'index' only.",
                          fields={f"samples[{i}]": "not a sample reference"})
        triple = (values[0], values[1], values[2])
        if triple in refs:
            raise Invalid(f"samples[{i}] names the same completion as samples"
                          f"[{refs.index(triple)}].", fields={f"samples[{i}]": "repeated"})
        refs.append(triple)  # type: ignore[arg-type]
    return refs


def _load(owner: AbstractBaseUser, refs: Sequence[tuple[int, int, int]]) -> list[Sample]:
    """The samples, in the order asked; another user's run is as missing as no run."""
    found: dict[tuple[int, int, int], Sample] = {}
    for run_id in {r for r, _, _ in refs}:
        steps = {s for r, s, _ in refs if r == run_id}
        for sample in Sample.objects.filter(run_id=run_id, run__owner_id=owner.pk,
                                            step__in=steps):
            found[(run_id, sample.step, sample.index)] = sample
    missing = [i for i, ref in enumerate(refs) if ref not in found]
    if missing:
        names = ", ".join(f"samples[{i}]" for i in missing[:10])
        raise Invalid(f"No such completion in your runs: {names}.",
                      fields={f"samples[{i}]": "no such sample in your runs" for i in missing})
    return [found[ref] for ref in refs]


def _group(samples: Sequence[Sample]) -> list[list[tuple[int, Sample]]]:
    """Samples by prompt (in the order prompts first appear), each with its position in the
    request; each prompt needs K_MIN to K_MAX completions."""
    groups: dict[str, list[tuple[int, Sample]]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault(sample.prompt, []).append((i, sample))
    for members in groups.values():
        first = members[0][0]
        if not K_MIN <= len(members) <= K_MAX:
            raise Invalid(f"samples[{first}] answers a prompt with {len(members)} completion"
                          f"{'s' if len(members) != 1 else ''} picked; pick {K_MIN} to "
                          f"{K_MAX} per prompt so people can rank them.",
                          fields={f"samples[{first}]": f"{len(members)} for its prompt"})
    return list(groups.values())


def batch_create_from_samples(*, owner: AbstractBaseUser, name: str, shared: Any,
                              samples: Any) -> Batch:
    """A ready-to-rank batch with one item per prompt of the picked completions."""
    name = clean_name(name or "", what="the batch")
    if not isinstance(shared, bool):
        raise Invalid("'shared' must be true or false.", fields={"shared": "true or false"})
    groups = _group(_load(owner, _references(samples)))
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.create(
            owner=owner, name=name, origin=BatchOrigin.SAMPLES, shared=shared,
            responses_per_prompt=max(len(g) for g in groups), items_expected=len(groups),
            status=BatchStatus.READY, started_at=now, finished_at=now)
        items = Item.objects.bulk_create([
            Item(batch=batch, index=i, prompt=members[0][1].prompt,
                 prompt_text=members[0][1].prompt) for i, members in enumerate(groups)])
        Response.objects.bulk_create([
            Response(item=item, index=j, text=sample.completion,
                     source={"run": sample.run_id, "step": sample.step, "index": sample.index})
            for item, members in zip(items, groups, strict=True)
            for j, (_, sample) in enumerate(members)])
    return batch
