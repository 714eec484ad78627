"""The engine's own sampling loop and its shared-prompt log-probs give the numbers of the plain
way of computing them (tiny-llama, CPU)."""
from __future__ import annotations

import pytest
import torch

from tests.training_helpers import one_torch_thread, tiny_model, tiny_tokenizer
from training.decode import sample, sample_next
from training.logprobs import PassPlan, completion_logprobs
from training.rollout import generate


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


EOS = 2
PROMPTS = ["Summarize: the committee met for four hours and then agreed to meet again.", "Hi"]


def _encoded():
    enc = tiny_tokenizer()(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def test_the_draw_keeps_only_the_nucleus_in_its_proportions():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(4000, 4)
    torch.manual_seed(0)

    drawn = sample_next(logits, 1.0, top_p=0.7)  # 0.5 < 0.7 keeps token 1; 0.8 drops token 2

    counts = torch.bincount(drawn, minlength=4).tolist()
    assert counts[2] == counts[3] == 0
    assert counts[0] / 4000 == pytest.approx(0.5 / 0.8, abs=0.03)


def test_the_draw_follows_the_tempered_distribution():
    logits = torch.tensor([[0.0, 1.0]]).expand(4000, 2)
    torch.manual_seed(0)

    drawn = sample_next(logits, 0.5, top_p=1.0)

    expected = torch.softmax(torch.tensor([0.0, 2.0]), dim=0)[1].item()  # logits / 0.5
    assert drawn.float().mean().item() == pytest.approx(expected, abs=0.03)


def test_at_a_near_zero_temperature_the_loop_picks_what_greedy_generate_picks():
    ids, mask = _encoded()  # the second prompt is left-padded
    with torch.no_grad():
        greedy = tiny_model().generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                       max_new_tokens=6, min_new_tokens=6,
                                       pad_token_id=EOS, eos_token_id=EOS)[:, ids.shape[1]:]

    ours, stopped = sample(tiny_model(), ids, mask, group_size=2, max_new_tokens=6,
                           temperature=1e-4, top_p=1.0, eos=[EOS], pad_id=EOS, min_new_tokens=6)

    assert not stopped
    assert torch.equal(ours, greedy.repeat_interleave(2, dim=0))


def test_no_completion_ends_before_min_new_tokens():
    torch.manual_seed(0)
    rollout = generate(tiny_model(), tiny_tokenizer(), PROMPTS, group_size=3, max_new_tokens=7,
                       temperature=1.0, top_p=1.0, max_prompt_tokens=64, min_new_tokens=7)

    assert rollout.completion_lengths.tolist() == [7] * 6
    assert rollout.truncated.all()


def _grouped_batch():
    """Each prompt twice, with different completions; the first completion ends early."""
    ids, mask = _encoded()
    completions = torch.tensor([[100, 200, EOS, EOS], [300, 400, 500, 600],
                                [700, 800, 900, 1000], [110, 120, 130, 140]])  # (4, T)
    action = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])
    input_ids = torch.cat([ids.repeat_interleave(2, 0), completions], dim=1)
    attention = torch.cat([mask.repeat_interleave(2, 0), action], dim=1)
    return input_ids, attention, ids.shape[1]


def test_sharing_a_groups_prompt_gives_the_same_logprobs_entropy_and_gradient():
    model = tiny_model()
    input_ids, attention, prompt_len = _grouped_batch()
    weight = model.get_input_embeddings().weight  # tied with the head: every path reaches it
    results = []
    weight.requires_grad_(True)
    try:
        for share in (True, False):
            logprobs, entropy = completion_logprobs(
                model, input_ids, attention, prompt_len, 0.7, with_entropy=True,
                plan=PassPlan(share_prompts=share))
            (logprobs * attention[:, prompt_len:]).sum().backward()
            results.append((logprobs.detach(), entropy, weight.grad.clone()))
            weight.grad = None
    finally:
        weight.requires_grad_(False)
    (shared, shared_entropy, shared_grad), (alone, alone_entropy, alone_grad) = results
    assert torch.allclose(shared, alone, atol=1e-5)
    assert torch.allclose(shared_entropy, alone_entropy, atol=1e-5)
    assert torch.allclose(shared_grad, alone_grad, atol=1e-5)
    assert shared_grad.abs().sum() > 0
