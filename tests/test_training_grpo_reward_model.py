"""GRPO with a fitted reward model as a reward source, weighted with a rule."""
from __future__ import annotations

import pytest

from tests.training_helpers import grpo_config, one_torch_thread, rm_config


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def test_grpo_scores_completions_with_a_fitted_reward_model(tmp_path):
    from training.grpo import train
    from training.metrics import ListSink
    from training.reward_model import train as fit
    from training.reward_scorer import RewardModelScorer

    (tmp_path / "rm").mkdir()
    (tmp_path / "grpo").mkdir()
    fitted, _ = fit(rm_config(tmp_path / "rm", max_steps=2))
    reward_model = fitted.checkpoints[-1]
    sink = ListSink()
    train(grpo_config(tmp_path / "grpo", max_steps=1, rewards=[
        {"type": "reward_model", "model": "rm", "path": reward_model, "weight": 2.0},
        {"type": "length", "target": 20, "weight": 1.0}]), sink=sink)

    metrics = sink.metrics[0][1]
    assert {"reward/reward_model/mean", "reward/length/mean"} <= set(metrics)
    samples = sink.samples[0][1]
    scorer = RewardModelScorer(reward_model, device="cpu")
    expected = scorer([s.prompt for s in samples], [s.completion for s in samples])
    for sample, score in zip(samples, expected, strict=True):
        assert sample.rewards["reward_model"] == pytest.approx(score, abs=1e-4)
        assert sample.reward == pytest.approx(2.0 * score + sample.rewards["length"], abs=1e-4)
