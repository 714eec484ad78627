"""Prompt rendering, completion masks, sampling and completion log-probs (tiny-llama, CPU)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.training_helpers import one_torch_thread, tiny_model, tiny_tokenizer
from training.rollout import (
    _completion_mask,
    _PollStop,
    completion_logprobs,
    eos_token_ids,
    generate,
    prompt_text,
    render_prompt,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


EOS = 2  # tiny-llama's <|im_end|>, also its pad token
NO_TEMPLATE = SimpleNamespace(chat_template=None)

# --- completion masks ---


def test_the_completion_mask_covers_tokens_up_to_and_including_the_first_eos():
    completion_ids = torch.tensor([
        [5, 6, EOS, 7, EOS],  # EOS in the middle: 3 tokens, the rest is after the end
        [EOS, 5, 6, 7, 8],  # EOS first: the completion is the EOS alone
        [5, 6, 7, 8, 9],  # no EOS: all 5 tokens, truncated
    ])

    mask, truncated = _completion_mask(completion_ids, [EOS])

    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert truncated.tolist() == [False, False, True]
    assert mask.dtype == torch.long


def test_the_completion_mask_stops_at_any_of_several_eos_ids():
    mask, truncated = _completion_mask(torch.tensor([[5, 9, 6, 2], [5, 6, 7, 8]]), [2, 9])

    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert truncated.tolist() == [False, True]


def test_eos_ids_join_the_generation_config_and_the_tokenizer():
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[2, 5]))

    assert eos_token_ids(model, SimpleNamespace(eos_token_id=7)) == [2, 5, 7]
    assert eos_token_ids(model, SimpleNamespace(eos_token_id=5)) == [2, 5]
    assert eos_token_ids(tiny_model(), tiny_tokenizer()) == [EOS]


# --- prompts ---


def test_plain_text_goes_through_the_chat_template_as_a_user_message():
    tok = tiny_tokenizer()

    rendered = render_prompt(tok, "Summarize: cats.", use_chat_template=True)

    assert rendered == tok.apply_chat_template([{"role": "user", "content": "Summarize: cats."}],
                                               tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<|im_start|>system\n")  # SmolLM2's default system prompt
    assert rendered.endswith("<|im_start|>user\nSummarize: cats.<|im_end|>\n"
                             "<|im_start|>assistant\n")


def test_plain_text_stays_as_it_is_without_the_chat_template():
    assert render_prompt(tiny_tokenizer(), "Summarize: cats.", False) == "Summarize: cats."
    assert render_prompt(NO_TEMPLATE, "Summarize: cats.", True) == "Summarize: cats."


def test_messages_always_go_through_the_chat_template():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]

    for use_chat_template in (True, False):
        rendered = render_prompt(tiny_tokenizer(), messages, use_chat_template)
        assert rendered == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_messages_without_a_chat_template_become_role_lines():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]

    assert render_prompt(NO_TEMPLATE, messages, True) == "system: Be brief.\nuser: Hi\nassistant: "
    assert prompt_text(messages) == "system: Be brief.\nuser: Hi"
    assert prompt_text("plain") == "plain"


# --- log-probs ---


def _left_padded_batch():
    """Two prompts of different lengths, left-padded, each followed by 4 completion tokens;
    the second completion ends with EOS at position 1 and is padded after it."""
    tok = tiny_tokenizer()
    prompts = ["Summarize: the committee met for four hours and then agreed to meet again.",
               "Hi"]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    completion_ids = torch.tensor([[1000, 2000, 3000, 4000], [500, EOS, EOS, EOS]])  # (B, T)
    action_mask, _ = _completion_mask(completion_ids, [EOS])
    input_ids = torch.cat([enc["input_ids"], completion_ids], dim=1)  # (B, P + T)
    attention_mask = torch.cat([enc["attention_mask"], action_mask], dim=1)
    unpadded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    assert len(unpadded[1]) < enc["input_ids"].shape[1]  # the second row really is padded
    return input_ids, attention_mask, action_mask, enc["input_ids"].shape[1], unpadded


def _naive_logprobs(prompt_ids: list[int], completion: list[int], temperature: float):
    """log_softmax of a full forward of the unpadded row, read at each completion token."""
    ids = torch.tensor([prompt_ids + completion])
    with torch.no_grad():
        logits = tiny_model()(input_ids=ids).logits[0].float() / temperature  # (L, V)
    logp = torch.log_softmax(logits, dim=-1)
    start = len(prompt_ids)
    values = [logp[start + t - 1, tok].item() for t, tok in enumerate(completion)]
    probs = logp.exp()
    entropy = [-(probs[start + t - 1] * logp[start + t - 1]).sum().item()
               for t in range(len(completion))]
    return torch.tensor(values), torch.tensor(entropy)


def test_completion_logprobs_match_a_naive_forward_of_each_unpadded_row():
    input_ids, attention_mask, action_mask, prompt_len, unpadded = _left_padded_batch()
    with torch.no_grad():
        logprobs, entropy = completion_logprobs(tiny_model(), input_ids, attention_mask,
                                                prompt_len, 0.7, with_entropy=True)

    assert logprobs.shape == entropy.shape == (2, 4)
    for row in range(2):
        n = int(action_mask[row].sum())
        completion = input_ids[row, prompt_len:prompt_len + n].tolist()
        expected, expected_entropy = _naive_logprobs(unpadded[row], completion, 0.7)
        assert torch.allclose(logprobs[row, :n], expected, atol=1e-4)
        assert torch.allclose(entropy[row, :n], expected_entropy, atol=1e-4)
    assert (logprobs <= 0).all()


def test_padding_does_not_change_a_rows_logprobs():
    input_ids, attention_mask, action_mask, prompt_len, unpadded = _left_padded_batch()
    with torch.no_grad():
        batched, _ = completion_logprobs(tiny_model(), input_ids, attention_mask, prompt_len,
                                         1.0)
        for row in range(2):
            ids = torch.tensor([unpadded[row] + input_ids[row, prompt_len:].tolist()])
            alone, _ = completion_logprobs(tiny_model(), ids, torch.ones_like(ids),
                                           len(unpadded[row]), 1.0)
            n = int(action_mask[row].sum())
            assert torch.allclose(batched[row, :n], alone[0, :n], atol=1e-4)


def test_completion_logprobs_are_taken_at_the_sampling_temperature():
    input_ids, attention_mask, _, prompt_len, _ = _left_padded_batch()
    with torch.no_grad():
        cold, _ = completion_logprobs(tiny_model(), input_ids, attention_mask, prompt_len, 0.5)
        warm, _ = completion_logprobs(tiny_model(), input_ids, attention_mask, prompt_len, 2.0)

    assert not torch.allclose(cold, warm)


def test_completion_logprobs_carry_gradient_for_the_update():
    model = tiny_model()
    input_ids, attention_mask, _, prompt_len, _ = _left_padded_batch()
    weight = model.get_input_embeddings().weight
    weight.requires_grad_(True)
    try:
        logprobs, entropy = completion_logprobs(model, input_ids, attention_mask, prompt_len,
                                                1.0)
        assert logprobs.requires_grad
        assert entropy is None
    finally:
        weight.requires_grad_(False)


# --- sampling ---


def test_generate_samples_a_group_of_completions_per_prompt():
    tok, model = tiny_tokenizer(), tiny_model()
    torch.manual_seed(0)

    rollout = generate(model, tok, ["Summarize: cats sleep a lot.", "Hi"], group_size=3,
                       max_new_tokens=6, temperature=1.0, top_p=1.0, max_prompt_tokens=64)

    P, T = rollout.prompt_len, rollout.action_mask.shape[1]  # prompt width, completion width
    assert rollout.input_ids.shape == rollout.attention_mask.shape == (6, P + T)
    assert T <= 6 and len(rollout.completions) == 6
    # the G completions of a prompt are adjacent and share its (left-padded) tokens
    assert torch.equal(rollout.input_ids[0, :P], rollout.input_ids[2, :P])
    assert torch.equal(rollout.input_ids[3, :P], rollout.input_ids[5, :P])
    assert not torch.equal(rollout.input_ids[0, :P], rollout.input_ids[3, :P])
    assert rollout.attention_mask[3, 0] == 0  # "Hi" is left-padded
    assert torch.equal(rollout.attention_mask[:, P:], rollout.action_mask)
    completion_ids = rollout.input_ids[:, P:]
    for row in range(6):
        n = int(rollout.completion_lengths[row])
        has_eos = bool((completion_ids[row, :n] == EOS).any())
        assert bool(rollout.truncated[row]) == (not has_eos)
        assert (completion_ids[row, n:] == tok.pad_token_id).all()
    assert rollout.completions == tok.batch_decode(completion_ids, skip_special_tokens=True)
    assert rollout.stopped is False
    assert not model.training  # generation leaves the mode as it found it


def test_generation_is_reproducible_from_the_seed():
    def sample() -> list[str]:
        torch.manual_seed(123)
        return generate(tiny_model(), tiny_tokenizer(), ["Hi"], group_size=2, max_new_tokens=5,
                        temperature=1.0, top_p=0.9, max_prompt_tokens=64).completions

    assert sample() == sample()


def test_the_stop_poll_asks_at_most_once_per_interval():
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return True

    eager, lazy = _PollStop(should_stop, every_s=0.0), _PollStop(should_stop, every_s=3600.0)
    ids = torch.zeros(2, 3, dtype=torch.long)

    assert lazy(ids, torch.zeros(2, 5)).tolist() == [False, False]
    assert asked == []
    assert eager(ids, torch.zeros(2, 5)).tolist() == [True, True]
    assert eager(ids, torch.zeros(2, 5)).tolist() == [True, True]
    assert len(asked) == 1 and eager.stopped  # once stopped, it does not ask again



# --- the LM head's log-probabilities ---


@pytest.mark.parametrize("in_place", [False, True], ids=["autograd", "training_pass"])
def test_the_heads_logprobs_and_gradients_are_autograds_over_several_chunks(monkeypatch,
                                                                            in_place):
    """The chunked head (log-probabilities made in place, their gradient from the kept
    log-softmax) gives what autograd gives through ``log_softmax(head(h) / T)``: values,
    entropies, and the gradients of the hidden states, the weight and the bias, whether the
    weight's gradient goes to autograd or straight into ``.grad``."""
    import contextlib

    from training import logprobs as lp
    from training.backend import CpuBackend
    from training.config import EngineSwitches

    monkeypatch.setattr(lp, "CHUNK_ELEMENTS", 4000)  # 4 positions a chunk: 6 chunks of 21
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 1000)
    hidden = torch.randn(3, 7, 16, requires_grad=True)
    targets = torch.randint(0, 1000, (3, 7))
    weights = torch.randn(3, 7)
    params = (hidden, head.weight, head.bias)

    logits = head(hidden) / 0.7
    expected = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    (expected * weights).sum().backward()
    expected_grads = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    backend = CpuBackend(torch.device("cpu"), EngineSwitches(onednn="always"))
    with backend.training_pass(head) if in_place else contextlib.nullcontext(lp.PLAIN) as plan:
        assert plan.head_in_place == in_place
        got, entropy = lp.head_logprobs(head, hidden, targets, 0.7, with_entropy=True,
                                        plan=plan)
        (got * weights).sum().backward()

    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(entropy, lp.entropy(logits.detach()), atol=1e-5)
    assert not entropy.requires_grad
    for p, grad in zip(params, expected_grads, strict=True):
        assert torch.allclose(p.grad, grad, atol=1e-5)
        assert p.grad.abs().sum() > 0


def test_a_head_with_adapters_keeps_its_adapters_gradient():
    """A LoRA-wrapped LM head computes more than ``hidden @ weight.T``: its log-probabilities
    go through autograd, so the adapter's weights get their gradient."""
    from peft import LoraConfig, get_peft_model

    from training import logprobs as lp

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm_head = torch.nn.Linear(16, 50, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lm_head(x)

    torch.manual_seed(0)
    wrapped = get_peft_model(Head(), LoraConfig(r=2, target_modules=["lm_head"],
                                                init_lora_weights=False))
    head = wrapped.base_model.model.lm_head
    hidden, targets = torch.randn(2, 3, 16), torch.randint(0, 50, (2, 3))

    got, _ = lp.head_logprobs(head, hidden, targets, 1.0)
    got.sum().backward()

    expected = head(hidden).log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(got, expected, atol=1e-6)
    assert head.lora_A["default"].weight.grad.abs().sum() > 0
