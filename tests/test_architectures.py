"""Every popular architecture, verified on a tiny random model of its family
(tests/architectures.py): the decode path it takes, the log-probabilities of the tokens it
samples against the Hugging Face forward (left padding included), greedy decoding against
``generate``, and one step of GRPO with LoRA, PPO with a critic from the policy and a reward
model, each checkpoint loaded back by plain transformers."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tests.architectures import (
    ARCHITECTURES,
    GENERATE,
    LEAN,
    MODEL_STEPS,
    Architecture,
    build_model,
    save_model,
)
from tests.training_helpers import (
    grpo_config,
    one_torch_thread,
    ppo_config,
    rm_config,
    tiny_tokenizer,
)
from training.backend import backend_for
from training.decode import decoder_and_head, sample, uses_lean_decoder
from training.grpo import train as train_grpo
from training.logprobs import completion_logprobs
from training.metrics import ListSink
from training.ppo import train as train_ppo
from training.reward_model import train as train_reward_model
from training.rollout import generate

PARAMS = [pytest.param(a, id=a.id) for a in ARCHITECTURES]
# the first prompt is longer than the Gemma models' window of 8; the second is left-padded
PROMPTS = ["Summarize: the committee met for four hours and then agreed to meet again.", "Hi"]
CAPACITY = 64  # prompt and completion positions of the rollouts here


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """Each architecture saved once as a model directory, on first use."""
    saved: dict[str, Path] = {}

    def get(arch: Architecture) -> Path:
        if arch.id not in saved:
            saved[arch.id] = save_model(arch, tmp_path_factory.mktemp(arch.id))
        return saved[arch.id]

    return get


def _path_taken(model: torch.nn.Module) -> str:
    if decoder_and_head(model) is None:
        return GENERATE
    return LEAN if uses_lean_decoder(model, capacity=CAPACITY) else MODEL_STEPS


def test_the_table_names_each_familys_own_model_class():
    names = {a.id: type(build_model(a)).__name__ for a in ARCHITECTURES}

    assert names == {"llama3": "LlamaForCausalLM", "qwen2.5": "Qwen2ForCausalLM",
                     "qwen3": "Qwen3ForCausalLM", "mistral": "MistralForCausalLM",
                     "gemma2": "Gemma2ForCausalLM", "gemma3": "Gemma3ForCausalLM",
                     "phi3": "Phi3ForCausalLM", "gpt-neox": "GPTNeoXForCausalLM"}


@pytest.mark.parametrize("arch", PARAMS)
def test_each_architecture_decodes_by_the_path_the_table_states(arch):
    assert _path_taken(build_model(arch)) == arch.path


@pytest.mark.parametrize("arch", PARAMS)
def test_the_logprobs_of_sampled_tokens_equal_the_hugging_face_forwards(arch):
    model, tok = build_model(arch), tiny_tokenizer()
    torch.manual_seed(0)
    rollout = generate(model, tok, PROMPTS, group_size=2, max_new_tokens=6, temperature=1.0,
                       top_p=1.0, max_prompt_tokens=64, min_new_tokens=6)
    ids, mask, prompt_len = rollout.input_ids, rollout.attention_mask, rollout.prompt_len
    assert mask[2:, 0].sum() == 0  # the second prompt's rows are left-padded
    backend = backend_for(torch.device("cpu"))

    with backend.frozen_pass(model) as plan:
        ours, _ = completion_logprobs(model, ids, mask, prompt_len, 1.0, plan=plan)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits

    theirs = F.log_softmax(logits[:, prompt_len - 1:-1].float(), dim=-1).gather(
        -1, ids[:, prompt_len:, None]).squeeze(-1)
    assert ours.shape == theirs.shape == (4, 6)
    assert torch.allclose(ours, theirs, atol=1e-4)


@pytest.mark.parametrize("arch", [p for p in PARAMS if p.values[0].path != GENERATE])
def test_the_engines_own_sampler_picks_what_greedy_generate_picks(arch):
    """Near zero temperature the draw is the argmax: the lean steps or the model's own steps
    over the engine's cache give ``generate``'s tokens, left padding and windows included."""
    model, tok = build_model(arch), tiny_tokenizer()
    enc = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        greedy = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                max_new_tokens=12, min_new_tokens=12, pad_token_id=tok.pad_token_id,
                                eos_token_id=tok.eos_token_id)[:, ids.shape[1]:]

    ours, _ = sample(model, ids, mask, group_size=1, max_new_tokens=12, temperature=1e-4,
                     top_p=1.0, eos=[tok.eos_token_id], pad_id=tok.pad_token_id,
                     min_new_tokens=12, lean=arch.path == LEAN)

    assert torch.equal(ours, greedy)


def _finite(metrics: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("arch", PARAMS)
def test_one_grpo_step_with_lora_saves_a_model_plain_transformers_loads_and_runs(
        arch, model_dir, tmp_path):
    sink = ListSink()

    result, last = train_grpo(grpo_config(tmp_path, model=model_dir(arch), max_steps=1,
                                          lora_rank=2, learning_rate=1e-2), sink=sink)

    assert result.steps == 1 and _finite(last) and last["optim/grad_norm"] > 0
    loaded = AutoModelForCausalLM.from_pretrained(result.checkpoints[-1])
    assert type(loaded).__name__ == type(build_model(arch)).__name__
    assert not any("lora" in name for name, _ in loaded.named_parameters())  # merged
    ids = tiny_tokenizer()(["Hi"], return_tensors="pt")["input_ids"]
    out = loaded.generate(input_ids=ids, do_sample=False, max_new_tokens=3, min_new_tokens=3)
    assert out.shape == (1, ids.shape[1] + 3)


@pytest.mark.parametrize("arch", PARAMS)
def test_one_ppo_step_with_a_critic_from_the_policy(arch, model_dir, tmp_path):
    result, last = train_ppo(ppo_config(tmp_path, model=model_dir(arch), max_steps=1,
                                        ppo_epochs=1, minibatches=1, prompts_per_step=2))

    assert result.steps == 1 and _finite(last)
    assert last["optim/grad_norm"] > 0 and last["optim/value_grad_norm"] > 0
    assert AutoModelForCausalLM.from_pretrained(result.checkpoints[-1]) is not None


@pytest.mark.parametrize("arch", PARAMS)
def test_one_reward_model_step(arch, model_dir, tmp_path):
    result, last = train_reward_model(rm_config(tmp_path, model=model_dir(arch), max_steps=1,
                                                eval_every=1))

    assert result.steps == 1 and _finite(last)
    scorer = AutoModelForSequenceClassification.from_pretrained(result.checkpoints[-1])
    enc = tiny_tokenizer()(["a prompt and its answer"], return_tensors="pt")
    assert scorer(**enc).logits.shape == (1, 1)
