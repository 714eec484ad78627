"""The launch form opened from another run: "Run again" clones a run's settings, "Train from
here" keeps the parent run's algorithm, rewards and hyperparameters with the checkpoint as
the base model (a reward model's checkpoint opens the reward-model form), and presets name
only fields the form has."""
from __future__ import annotations

import pytest

from tests.runs_helpers import make_dataset, make_run
from tests.site_data import write_checkpoint
from training.algorithms import algorithms, validate_hyperparameters

pytestmark = pytest.mark.django_db

REWARDS = [{"type": "length", "target": 77, "weight": 0.5},
           {"type": "regex", "pattern": "^<answer>.*</answer>$", "weight": 2.0}]


@pytest.fixture(autouse=True)
def checkpoints_dir(settings, tmp_path):
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def form_of(response):
    assert response.status_code == 200
    return response.context["form"], response.context


def test_run_again_opens_the_form_with_the_runs_settings(signed_in, user):
    run = make_run(user, make_dataset(user), name="ppo one", algorithm="ppo", steps=1,
                   rewards=REWARDS, hyperparameters={"max_steps": 7, "ppo_epochs": 3,
                                                     "kl_coef": 0.2, "whiten_advantages": False})
    form, context = form_of(signed_in.get(f"/runs/new/?from_run={run.pk}"))
    assert form.algorithm == "ppo" and context["algorithm_label"] == "PPO"
    assert form.initial["name"] == "ppo one (again)"
    assert form.initial["dataset"] == run.dataset_id and form.initial["base_model"] == "tiny-llama"
    assert form.initial["hp_ppo_epochs"] == 3 and form.initial["hp_kl_coef"] == 0.2
    assert form.initial["hp_whiten_advantages"] is False
    assert context["rewards"] == REWARDS
    html = signed_in.get(f"/runs/new/?from_run={run.pk}").content.decode()
    assert 'value="77"' in html and "^&lt;answer&gt;" in html  # the reward rows are filled
    assert "Settings of run" in html


def test_train_from_here_keeps_the_parents_algorithm_rewards_and_hyperparameters(signed_in,
                                                                                  user):
    parent = make_run(user, make_dataset(user), name="grpo parent", steps=2, rewards=REWARDS,
                      hyperparameters={"max_steps": 9, "group_size": 6, "beta": 0.0})
    checkpoint = write_checkpoint(parent, 2)
    for url in (f"/runs/new/?from_checkpoint={checkpoint.pk}",
                # the run page's older link, with no algorithm: read the same way
                f"/runs/new/?base_model={checkpoint.model_id}&dataset={parent.dataset_id}"):
        form, context = form_of(signed_in.get(url))
        assert form.algorithm == "grpo", url
        assert form.initial["base_model"] == checkpoint.model_id
        assert form.initial["hp_group_size"] == 6 and form.initial["hp_beta"] == 0.0
        assert context["rewards"] == REWARDS
        assert form.initial["name"] == "grpo parent from step 2"
        assert checkpoint.model_id in dict(form.fields["base_model"].choices)


def test_a_reward_models_checkpoint_opens_the_reward_model_form_with_it_as_base(signed_in,
                                                                                 user):
    fitted = make_run(user, make_dataset(user, "pairs", "preferences"), name="rm",
                      algorithm="reward_model", steps=1, rewards=[],
                      metrics=lambda s: {"loss/train": 1.0},
                      hyperparameters={"max_steps": 30, "batch_size": 4})
    checkpoint = write_checkpoint(fitted, 1)
    form, context = form_of(signed_in.get(f"/runs/new/?from_checkpoint={checkpoint.pk}"))
    assert form.algorithm == "reward_model"
    assert form.initial["base_model"] == checkpoint.model_id
    assert checkpoint.model_id in dict(form.fields["base_model"].choices)
    assert form.initial["hp_batch_size"] == 4 and form.initial["dataset"] == fitted.dataset_id


def test_another_users_run_or_checkpoint_is_404(signed_in, other_user):
    theirs = make_run(other_user, make_dataset(other_user), steps=1)
    checkpoint = write_checkpoint(theirs, 1)
    assert signed_in.get(f"/runs/new/?from_run={theirs.pk}").status_code == 404
    assert signed_in.get(f"/runs/new/?from_checkpoint={checkpoint.pk}").status_code == 404
    assert signed_in.get("/runs/new/?from_run=abc").status_code == 404


@pytest.mark.parametrize("spec", algorithms(), ids=lambda s: s.id)
def test_every_preset_names_fields_the_form_has(spec):
    algorithm = spec.id
    known = {f.name for f in spec.config.hyperparameter_fields()} | {"base_model"}
    for name, values in spec.presets.items():
        assert set(values) <= known, (name, set(values) - known)
        # and values the engine accepts (ConfigError otherwise)
        validate_hyperparameters(algorithm, {k: v for k, v in values.items() if k != "base_model"})


def test_the_smoke_presets_pick_tiny_llama():
    for spec in algorithms():
        assert spec.presets["Smoke test (tiny-llama)"]["base_model"] == "tiny-llama"
