"""PPO end to end on tiny-llama (CPU): metrics, samples, the critic, checkpoints, cancel,
resume, micro-batches, the adaptive KL controller. Each step is 4 prompts x 1 completion of at
most 8 tokens, 2 epochs x 2 minibatches of updates."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tests.training_helpers import (
    TINY_LLAMA,
    files_with_pickle_suffix,
    one_torch_thread,
    ppo_config,
    tiny_tokenizer,
)
from training.checkpoints import MANIFEST, STATE_DIR
from training.critic import CRITIC_FILE, build_critic
from training.metrics import ListSink
from training.ppo import AdaptiveKLController, setup_run, train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


# every key the brief and API.md ask of a PPO run with one length reward
PPO_KEYS = {
    "reward/mean", "reward/std", "reward/length/mean", "reward/length/std", "kl/mean",
    "kl/coef", "entropy/mean", "loss/policy", "loss/value", "loss/entropy", "loss/total",
    "value/clip_frac", "value/explained_var", "value/mean", "kl/approx", "clip/policy_frac",
    "clip/low", "clip/high", "clip/region", "completion/length_mean", "completion/length_min",
    "completion/length_max", "completion/chars_mean", "completion/truncated_frac", "optim/lr",
    "optim/grad_norm", "perf/step_s", "perf/generate_s", "perf/tokens_per_s",
    "perf/peak_mem_mb", "perf/elapsed_s", "perf/tokens_total",
}


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as fh:
        return {key: fh.get_tensor(key) for key in fh.keys()}


def test_train_logs_every_ppo_metric_at_each_step(tmp_path):
    sink = ListSink()

    result, last = train(ppo_config(tmp_path, max_steps=3), sink=sink)

    assert (result.steps, result.stop_reason) == (3, "max_steps")
    assert [step for step, _ in sink.metrics] == [1, 2, 3]
    for _, metrics in sink.metrics:
        assert PPO_KEYS <= metrics.keys()
        assert all(math.isfinite(v) for v in metrics.values())
        assert metrics["reward/length/mean"] == pytest.approx(metrics["reward/mean"])
        assert 0 < metrics["completion/length_mean"] <= 8
        assert metrics["kl/coef"] == 0.05  # no kl_target: fixed
        assert 0 <= metrics["value/clip_frac"] <= 1 and 0 <= metrics["clip/region"] <= 1
        assert metrics["clip/region"] == pytest.approx(metrics["clip/policy_frac"])
        assert metrics["loss/entropy"] == 0.0  # entropy_coef 0
        assert metrics["perf/tokens_per_s"] > 0 and metrics["perf/peak_mem_mb"] > 0
        phases = [metrics[f"perf/{p}_s"] for p in ("generate", "reward", "evaluate", "update")]
        assert all(s > 0 for s in phases)  # the step's split, as GRPO's
        assert sum(phases) == pytest.approx(metrics["perf/step_s"], rel=0.05)
    first = sink.metrics[0][1]
    assert first["kl/mean"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
    assert first["value/mean"] == 0.0  # the zero-initialised head
    assert sink.series("loss/value")[-1] < sink.series("loss/value")[0]
    assert last == sink.metrics[-1][1]


def test_samples_carry_the_sequence_reward_and_the_mean_token_advantage(tmp_path):
    sink = ListSink()

    train(ppo_config(tmp_path, max_steps=1), sink=sink)

    samples = sink.samples[0][1]
    assert [s.index for s in samples] == [0, 1, 2, 3]  # one completion per prompt
    assert len({s.prompt for s in samples}) == 4
    for sample in samples:
        assert sample.rewards == {"length": -abs(20 - len(sample.completion))}
        assert sample.reward == sample.rewards["length"]
        assert math.isfinite(sample.advantage)
    # whitened over all tokens: the length-weighted sum of per-sequence means is 0
    length = sink.metrics[0][1]["completion/length_mean"]
    assert length == 8  # tiny-llama never samples EOS in 8 tokens: every row is 8 long
    assert sum(s.advantage for s in samples) == pytest.approx(0.0, abs=1e-5)


def test_the_critic_gives_a_value_per_completion_token_and_has_its_own_weights(tmp_path):
    state, _ = setup_run(ppo_config(tmp_path), None)
    ids = torch.randint(0, 100, (3, 7))

    values = state.critic(ids, torch.ones_like(ids), prompt_len=4)

    assert values.shape == (3, 3) and values.dtype == torch.float32
    assert torch.equal(values, torch.zeros(3, 3))
    policy = dict(state.policy.named_parameters())
    critic = dict(state.critic.backbone.named_parameters())
    shared = {id(p) for p in policy.values()} & {id(p) for p in critic.values()}
    assert not shared
    assert torch.equal(critic["embed_tokens.weight"], policy["model.embed_tokens.weight"])
    assert [len(g["params"]) for g in state.optimizer.param_groups] == \
        [len(policy), len(list(state.critic.parameters()))]


def test_a_checkpoint_holds_only_the_policy_and_keeps_the_critic_in_the_training_state(
        tmp_path):
    result, _ = train(ppo_config(tmp_path, max_steps=2, checkpoint_every=1))

    folder = Path(result.checkpoints[-1])
    assert result.checkpoints == [str(tmp_path / "out" / "step-1"), str(folder)]
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["algorithm"] == "ppo" and manifest["step"] == 2
    assert _tensors(folder / "model.safetensors").keys() == \
        _tensors(TINY_LLAMA / "model.safetensors").keys()  # no value head, no critic
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    assert loaded.config.num_hidden_layers == 2
    critic = _tensors(folder / STATE_DIR / CRITIC_FILE)
    assert {"value_head.weight", "value_head.bias"} <= critic.keys()
    assert any(key.startswith("backbone.") for key in critic)
    assert json.loads((folder / STATE_DIR / "state.json").read_text())["kl_coef"] == 0.05
    assert files_with_pickle_suffix(folder) == []


def test_the_adaptive_kl_controller_follows_the_target():
    # coef *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon; n = 100, horizon 10000
    above, below, near = (AdaptiveKLController(0.1, target=1.0) for _ in range(3))

    assert above.update(10.0, n_steps=100) == pytest.approx(0.1 * (1 + 0.2 * 0.01))  # clipped
    assert below.update(0.0, n_steps=100) == pytest.approx(0.1 * (1 - 0.2 * 0.01))  # clipped
    assert near.update(1.1, n_steps=100) == pytest.approx(0.1 * (1 + 0.1 * 0.01))
    assert above.value > 0.1 > below.value


def test_a_kl_target_adapts_the_coefficient_between_steps(tmp_path):
    sink = ListSink()

    train(ppo_config(tmp_path, max_steps=2, kl_target=5.0), sink=sink)

    # step 1 has KL 0 < target: the coefficient step 2 uses is lower by 0.2 x 4 / 10000
    assert sink.series("kl/coef") == pytest.approx([0.05, 0.05 * (1 - 0.2 * 4 / 10_000)],
                                                   rel=1e-9)


def test_kl_stop_ends_the_run_once_kl_passes_the_threshold(tmp_path):
    sink = ListSink()

    result, last = train(ppo_config(tmp_path, max_steps=6, kl_stop=0.0, learning_rate=0.05),
                         sink=sink)

    assert result.stop_reason == "kl_stop" and 2 <= result.steps < 6
    assert last["kl/mean"] > 0.0
    assert result.checkpoints == [str(tmp_path / "out" / f"step-{result.steps}")]


def test_without_kl_penalty_or_stop_no_reference_is_built(tmp_path):
    sink = ListSink()
    config = ppo_config(tmp_path, max_steps=1, kl_coef=0.0)

    state, _ = setup_run(config, None)
    train(config, sink=sink)

    assert state.reference is None
    assert "kl/mean" not in sink.metrics[0][1] and sink.metrics[0][1]["kl/coef"] == 0.0


def test_a_lora_run_trains_adapters_in_both_networks(tmp_path):
    sink = ListSink()

    result, last = train(ppo_config(tmp_path, max_steps=2, lora_rank=2, learning_rate=1e-2),
                         sink=sink)

    folder = Path(result.checkpoints[-1])
    assert _tensors(folder / "model.safetensors").keys() == \
        _tensors(TINY_LLAMA / "model.safetensors").keys()  # merged, plain transformers
    critic = _tensors(folder / STATE_DIR / CRITIC_FILE)
    assert {"value_head.weight", "value_head.bias"} <= critic.keys()
    assert all("lora" in key for key in critic if not key.startswith("value_head"))
    assert sink.metrics[0][1]["kl/mean"] == pytest.approx(0.0, abs=1e-6)
    assert last["kl/mean"] > 0


def test_critic_init_reward_starts_from_the_reward_model_backbone(tmp_path):
    # a reward model as training.reward_model saves one: a one-output sequence classifier
    reward_model = AutoModelForSequenceClassification.from_pretrained(str(TINY_LLAMA),
                                                                      num_labels=1)
    with torch.no_grad():
        reward_model.model.embed_tokens.weight.mul_(2.0)
    reward_model.save_pretrained(tmp_path / "rm")
    tiny_tokenizer().save_pretrained(tmp_path / "rm")
    rewards = [{"type": "reward_model", "model": "rm", "path": str(tmp_path / "rm")}]
    config = ppo_config(tmp_path, critic_init="reward", rewards=rewards)

    critic = build_critic(config, tiny_tokenizer(), dtype=torch.float32,
                          device=torch.device("cpu"))

    assert critic.value_head.in_features == 64
    assert torch.equal(critic.backbone.embed_tokens.weight,
                       reward_model.model.embed_tokens.weight)
    assert not torch.equal(critic.backbone.embed_tokens.weight,
                           _tensors(TINY_LLAMA / "model.safetensors")["model.embed_tokens.weight"])


def test_critic_init_reward_refuses_a_reward_model_with_another_tokenizer(tmp_path):
    other = tmp_path / "other-rm"
    shutil.copytree(TINY_LLAMA, other)
    tokenizer = tiny_tokenizer().__class__.from_pretrained(str(other))
    tokenizer.add_tokens(["<not-in-the-policy>"])
    tokenizer.save_pretrained(str(other))
    rewards = [{"type": "reward_model", "model": "rm", "path": str(other)}]
    config = ppo_config(tmp_path, critic_init="reward", rewards=rewards)

    with pytest.raises(ValueError, match="sharing the policy's tokenizer"):
        build_critic(config, tiny_tokenizer(), dtype=torch.float32, device=torch.device("cpu"))


def test_critic_init_reward_needs_a_reward_model_source(tmp_path):
    with pytest.raises(ValueError, match="needs a reward source whose model"):
        build_critic(ppo_config(tmp_path, critic_init="reward"), tiny_tokenizer(),
                     dtype=torch.float32, device=torch.device("cpu"))
