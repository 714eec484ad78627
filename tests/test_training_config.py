"""Hyperparameter and reward validation, and the frozen config a worker builds."""
from __future__ import annotations

import dataclasses

import pytest

from training.algorithms import build_config, validate_hyperparameters
from training.algorithms.grpo import GRPOConfig
from training.config import ConfigError, RewardSpec
from training.reward_types import reward_source_names, validate_rewards

# --- hyperparameters ---


def test_every_hyperparameter_has_help_text():
    fields = GRPOConfig.hyperparameter_fields()

    assert fields
    for f in fields:
        assert isinstance(f.metadata.get("help"), str) and f.metadata["help"].strip(), f.name


def test_worker_fields_are_not_hyperparameters():
    names = {f.name for f in GRPOConfig.hyperparameter_fields()}

    assert not names & {"model_path", "dataset_path", "output_dir", "device", "rewards"}


def test_the_grpo_hyperparameters_named_in_the_api_exist():
    names = {f.name for f in GRPOConfig.hyperparameter_fields()}

    assert {"max_steps", "learning_rate", "seed", "checkpoint_every", "precision", "lora_rank",
            "prompts_per_step", "max_new_tokens", "temperature", "top_p", "kl_stop",
            "group_size", "epsilon_low", "epsilon_high", "beta", "loss_type",
            "scale_rewards"} <= names


def test_validate_hyperparameters_fills_in_every_default():
    values = validate_hyperparameters("grpo", {})

    assert values == {f.name: f.default for f in GRPOConfig.hyperparameter_fields()}
    assert values["group_size"] == 8
    assert values["beta"] == 0.04
    assert values["epsilon_low"] == values["epsilon_high"] == 0.2
    assert values["loss_type"] == "grpo"
    assert values["scale_rewards"] == "group"
    assert values["kl_stop"] is None


def test_validate_hyperparameters_keeps_given_values_and_coerces_form_strings():
    values = validate_hyperparameters("grpo", {"group_size": "4", "learning_rate": "3e-4",
                                               "use_chat_template": "false", "beta": 0,
                                               "max_steps": 5.0})

    assert values["group_size"] == 4
    assert values["learning_rate"] == 3e-4
    assert values["use_chat_template"] is False
    assert values["beta"] == 0.0 and isinstance(values["beta"], float)
    assert values["max_steps"] == 5 and isinstance(values["max_steps"], int)


def test_an_unknown_hyperparameter_is_named_in_the_error():
    with pytest.raises(ConfigError) as caught:
        validate_hyperparameters("grpo", {"group_size": 4, "gamma": 0.99})

    assert set(caught.value.fields) == {"gamma"}
    assert "unknown" in caught.value.fields["gamma"]


@pytest.mark.parametrize(("name", "value"), [
    ("group_size", 1), ("group_size", 257), ("learning_rate", -1e-5), ("learning_rate", 2.0),
    ("temperature", 0.0), ("top_p", 1.5), ("max_steps", 0), ("epsilon_low", 1.5),
    ("kl_stop", -0.1),
])
def test_an_out_of_range_value_is_refused(name, value):
    with pytest.raises(ConfigError) as caught:
        validate_hyperparameters("grpo", {name: value})

    assert list(caught.value.fields) == [name]
    assert "at least" in caught.value.fields[name] or "at most" in caught.value.fields[name]


@pytest.mark.parametrize(("name", "value", "message"), [
    ("group_size", True, "whole number"),  # a bool is not an int
    ("group_size", 1.5, "whole number"),
    ("group_size", "abc", "whole number"),
    ("learning_rate", "abc", "number"),
    ("learning_rate", False, "number"),
    ("learning_rate", float("nan"), "finite"),
    ("learning_rate", float("inf"), "finite"),
    ("use_chat_template", "maybe", "true or false"),
    ("max_steps", None, "required"),
    ("learning_rate", "", "required"),
])
def test_a_value_of_the_wrong_type_is_refused(name, value, message):
    with pytest.raises(ConfigError) as caught:
        validate_hyperparameters("grpo", {name: value})

    assert message in caught.value.fields[name]


@pytest.mark.parametrize("empty", [None, ""])
def test_kl_stop_may_be_left_empty(empty):
    assert validate_hyperparameters("grpo", {"kl_stop": empty})["kl_stop"] is None
    assert validate_hyperparameters("grpo", {"kl_stop": "0.5"})["kl_stop"] == 0.5


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("loss_type", "dr_grpo", "mean"),
    ("scale_rewards", "none", "median"),
    ("precision", "bf16", "fp16"),
])
def test_choice_fields_accept_only_their_choices(name, good, bad):
    assert validate_hyperparameters("grpo", {name: good})[name] == good
    with pytest.raises(ConfigError) as caught:
        validate_hyperparameters("grpo", {name: bad})
    assert "must be one of" in caught.value.fields[name]


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        validate_hyperparameters("grpo", {"group_size": 0, "loss_type": "x", "nope": 1})

    assert set(caught.value.fields) == {"group_size", "loss_type", "nope"}
    assert "group_size" in str(caught.value)


def test_micro_batch_size_must_divide_the_completions_of_a_step():
    ok = validate_hyperparameters("grpo", {"prompts_per_step": 3, "group_size": 4,
                                           "micro_batch_size": 6})
    assert ok["micro_batch_size"] == 6

    with pytest.raises(ConfigError) as caught:
        validate_hyperparameters("grpo", {"prompts_per_step": 3, "group_size": 4,
                                          "micro_batch_size": 5})
    assert "12" in caught.value.fields["micro_batch_size"]


def test_an_unknown_algorithm_or_a_non_object_is_refused():
    with pytest.raises(ConfigError) as unknown:
        validate_hyperparameters("sft", {})
    with pytest.raises(ConfigError) as not_a_dict:
        validate_hyperparameters("grpo", [("group_size", 4)])  # type: ignore[arg-type]

    assert "algorithm" in unknown.value.fields
    assert "hyperparameters" in not_a_dict.value.fields


# --- rewards ---


def test_validate_rewards_returns_clean_sources():
    clean = validate_rewards([
        {"type": "length", "target": 200},
        {"type": "regex", "pattern": r"^<answer>.*</answer>$", "weight": 2},
        {"type": "exact_match", "column": "solution", "weight": 0.5},
        {"type": "exact_match"},
    ], columns=["prompt", "solution", "answer"])

    assert clean == [
        {"type": "length", "weight": 1.0, "target": 200},
        {"type": "regex", "weight": 2.0, "pattern": r"^<answer>.*</answer>$"},
        {"type": "exact_match", "weight": 0.5, "column": "solution"},
        {"type": "exact_match", "weight": 1.0, "column": "answer"},
    ]
    assert isinstance(clean[1]["weight"], float)


@pytest.mark.parametrize("rewards", [[], None, {"type": "length", "target": 3}, "length"])
def test_validate_rewards_needs_a_non_empty_list(rewards):
    with pytest.raises(ConfigError) as caught:
        validate_rewards(rewards)

    assert list(caught.value.fields) == ["rewards"]


@pytest.mark.parametrize(("source", "message"), [
    ({"type": "vibes"}, "type must be one of"),
    ("length", "type must be one of"),
    ({"target": 3}, "type must be one of"),
    ({"type": "length", "target": 3, "colour": "red"}, "unknown field colour"),
    ({"type": "length", "target": 3, "weight": "heavy"}, "weight must be a finite number"),
    ({"type": "length", "target": 3, "weight": True}, "weight must be a finite number"),
    ({"type": "length", "target": 3, "weight": float("nan")}, "weight must be a finite number"),
    ({"type": "length"}, "length needs target"),
    ({"type": "length", "target": -1}, "length needs target"),
    ({"type": "length", "target": 2_000_000}, "length needs target"),
    ({"type": "length", "target": 20.5}, "length needs target"),
    ({"type": "length", "target": True}, "length needs target"),
    ({"type": "regex"}, "regex needs pattern"),
    ({"type": "regex", "pattern": ""}, "regex needs pattern"),
    ({"type": "regex", "pattern": "a" * 2001}, "regex needs pattern"),
    ({"type": "regex", "pattern": "(unclosed"}, "not a valid regular expression"),
    # RE2 runs every pattern in linear time and so refuses what needs backtracking
    ({"type": "regex", "pattern": r"(a)\1"}, "no backreferences"),
    ({"type": "regex", "pattern": r"(?=a)a"}, "no backreferences or lookarounds"),
    ({"type": "regex", "pattern": "(a{1000}){1000}"}, "not a valid regular expression"),
    ({"type": "regex", "pattern": "\ud800"}, "not valid Unicode"),
    ({"type": "length", "target": 3, "weight": 1e7}, "weight must be a finite number"),
    ({"type": "exact_match", "column": "missing"}, "exact_match needs column"),
    ({"type": "exact_match", "column": 3}, "exact_match needs column"),
    ({"type": "reward_model"}, "reward_model needs model"),
    ({"type": "reward_model", "model": ""}, "reward_model needs model"),
])
def test_validate_rewards_names_the_bad_source(source, message):
    with pytest.raises(ConfigError) as caught:
        validate_rewards([{"type": "length", "target": 1}, source],
                         columns=["prompt", "answer"])

    assert list(caught.value.fields) == ["rewards[1]"]
    assert message in caught.value.fields["rewards[1]"]


def test_validate_rewards_accepts_the_catastrophic_patterns_re2_runs_in_linear_time():
    clean = validate_rewards([{"type": "regex", "pattern": "(.*)*ZZZ"},
                              {"type": "regex", "pattern": "(a+)+$"}])

    assert [r["pattern"] for r in clean] == ["(.*)*ZZZ", "(a+)+$"]


def test_validate_rewards_refuses_more_than_sixteen_sources():
    with pytest.raises(ConfigError) as caught:
        validate_rewards([{"type": "length", "target": 1}] * 17)

    assert "at most 16" in caught.value.fields["rewards"]


@pytest.mark.parametrize("weight", [float("inf"), float("-inf")])
def test_validate_rewards_refuses_an_infinite_weight(weight):
    # An infinite weight turns every reward into +-inf and every advantage into NaN.
    with pytest.raises(ConfigError) as caught:
        validate_rewards([{"type": "length", "target": 3, "weight": weight}])

    assert "weight" in caught.value.fields["rewards[0]"]


def test_exact_match_accepts_any_column_when_the_columns_are_unknown():
    assert validate_rewards([{"type": "exact_match", "column": "x"}])[0]["column"] == "x"


def test_reward_source_names_number_a_type_that_occurs_twice():
    names = reward_source_names([{"type": "length"}, {"type": "regex"}, {"type": "length"},
                                 {"type": "exact_match"}])

    assert names == ["length_1", "regex", "length_2", "exact_match"]


# --- build_config ---


def test_build_config_returns_a_frozen_grpo_config_with_reward_specs():
    rewards = validate_rewards([{"type": "length", "target": 20},
                                {"type": "regex", "pattern": "a+", "weight": 0.5}])

    config = build_config("grpo", {"group_size": "4", "beta": 0}, model_path="/m",
                          dataset_path="/d.jsonl", output_dir="/o", rewards=rewards)

    assert isinstance(config, GRPOConfig)
    assert config.group_size == 4 and config.beta == 0.0
    assert config.max_steps == 20  # a default
    assert (config.model_path, config.dataset_path, config.output_dir) == ("/m", "/d.jsonl",
                                                                           "/o")
    assert config.rewards == (RewardSpec(type="length", weight=1.0, args={"target": 20}),
                              RewardSpec(type="regex", weight=0.5, args={"pattern": "a+"}))
    assert config.completions_per_step == config.prompts_per_step * 4
    assert config.hyperparameters()["group_size"] == 4
    assert "model_path" not in config.hyperparameters()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.group_size = 2  # type: ignore[misc]


def test_build_config_validates_the_hyperparameters_again():
    with pytest.raises(ConfigError) as caught:
        build_config("grpo", {"group_size": 1}, model_path="/m")

    assert "group_size" in caught.value.fields
