"""A judge model as a reward source: a causal LM from the registry reads each (prompt,
completion) through a prompt template and answers with a score from 1 to 10, which is the
reward; an answer with no such number is a counted miss (scored 0). Greedy, a few tokens,
batched, on the worker beside the policy."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from training.modelhub import load_causal_lm, load_tokenizer
from training.runtime import resolve_device

DEFAULT_TEMPLATE = ("Rate the answer to the question from 1 (bad) to 10 (excellent). "
                    "Question: {prompt} Answer: {completion} Score:")
ANSWER_TOKENS = 4  # "10", "7/10": a score needs no more
TEXT_MAX_CHARS = 4000  # of a prompt or a completion put into the template
_SCORE = re.compile(r"(?<!\d)(10|[1-9])(?!\d)")


def parse_score(answer: str) -> float | None:
    """The first whole number from 1 to 10 in the judge's answer, or None."""
    found = _SCORE.search(answer)
    return float(found.group(1)) if found else None


_FIELD = re.compile(r"\{(prompt|completion)\}")


def fill(template: str, prompt: str, completion: str) -> str:
    """The template with ``{prompt}`` and ``{completion}`` put in, in one pass: braces in the
    texts stay text (a completion saying ``{prompt}`` is not expanded)."""
    values = {"prompt": prompt[:TEXT_MAX_CHARS], "completion": completion[:TEXT_MAX_CHARS]}
    return _FIELD.sub(lambda m: values[m.group(1)], template)


class JudgeScorer:
    """:class:`training.scoring.RewardScorer` for ``judge`` sources; ``last_metrics`` says
    what the last batch cost and how often the judge gave no score."""

    def __init__(self, path: str | Path, *, device: torch.device | str,
                 args: Mapping[str, Any] | None = None):
        args = args or {}
        self.template = str(args.get("template") or DEFAULT_TEMPLATE)
        self.batch_size = int(args.get("batch_size") or 8)
        self.tokenizer = load_tokenizer(path)
        self.model = load_causal_lm(path, dtype=torch.float32,
                                    device=resolve_device(str(device))).eval()
        self.model.requires_grad_(False)
        self.last_metrics: dict[str, float] = {}

    def _texts(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[str]:
        texts = []
        for prompt, completion in zip(prompts, completions, strict=True):
            question = prompt if isinstance(prompt, str) else " ".join(
                str(m.get("content", "")) for m in prompt if isinstance(m, dict))
            text = fill(self.template, question, completion)
            if getattr(self.tokenizer, "chat_template", None):
                text = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}], tokenize=False,
                    add_generation_prompt=True)
            texts.append(text)
        return texts

    @torch.inference_mode()
    def __call__(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[float]:
        started, tokens, misses = time.perf_counter(), 0, 0
        scores: list[float] = []
        texts = self._texts(prompts, completions)
        device = next(self.model.parameters()).device
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt",
                                 padding=True, truncation=True, max_length=2048,
                                 add_special_tokens=False).to(device)
            out = self.model.generate(**enc, do_sample=False, max_new_tokens=ANSWER_TOKENS,
                                      pad_token_id=self.tokenizer.pad_token_id)
            answers = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:],
                                                  skip_special_tokens=True)
            tokens += int(out.shape[0]) * ANSWER_TOKENS
            for answer in answers:
                score = parse_score(answer)
                misses += score is None
                scores.append(score if score is not None else 0.0)
        seconds = time.perf_counter() - started
        self.last_metrics = {"miss_frac": misses / max(1, len(scores)),
                             "tokens_per_s": tokens / seconds if seconds > 0 else 0.0}
        return scores
