"""The run pages with the Django test client: the launch form per algorithm and permissions."""
from __future__ import annotations

import pytest

from tests.conftest import PROMPTS, upload_prompts
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


@pytest.mark.parametrize("algorithm, present, absent", [
    ("grpo", ["hp_group_size", "hp_beta", "reward-0-type"], ["hp_gamma", "hp_batch_size"]),
    ("ppo", ["hp_gamma", "hp_lam", "hp_vf_coef", "reward-0-type"], ["hp_group_size"]),
    ("reward_model", ["hp_batch_size", "hp_eval_fraction"], ["reward-0-type", "hp_beta"]),
])
def test_the_form_shows_the_fields_of_the_chosen_algorithm(signed_in, algorithm, present,
                                                           absent):
    html = signed_in.get(f"/runs/new/?algorithm={algorithm}").content.decode()
    for name in present:
        assert f'name="{name}"' in html, name
    for name in absent:
        assert f'name="{name}"' not in html, name


def test_the_form_launches_a_run_and_shows_its_page(signed_in, api):
    dataset = upload_prompts(api, PROMPTS[:4])
    response = signed_in.post("/runs/new/", {
        "algorithm": "grpo", "name": "from the form", "dataset": dataset["id"],
        "base_model": "tiny-llama", "reward-0-type": "length", "reward-0-length-target": "30",
        "reward-0-weight": "1", **{f"hp_{k}": v for k, v in {
            "max_steps": 3, "learning_rate": 1e-5, "warmup_steps": 0, "max_grad_norm": 1,
            "seed": 0, "checkpoint_every": 0, "precision": "auto", "lora_rank": 0,
            "prompts_per_step": 2, "max_new_tokens": 8, "temperature": 0.8, "top_p": 1,
            "use_chat_template": "on", "micro_batch_size": 0, "kl_stop": "",
            "samples_per_step": 4, "group_size": 2, "epsilon_low": 0.2, "epsilon_high": 0.2,
            "beta": 0.04, "loss_type": "grpo", "scale_rewards": "group",
            "num_iterations": 1}.items()}})
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.rewards == [{"type": "length", "target": 30, "weight": 1.0}]
    assert run.hyperparameters["group_size"] == 2 and run.hyperparameters["kl_stop"] is None
    page = signed_in.get(f"/runs/{run.pk}/").content.decode()
    assert "from the form" in page and 'id="cancel-run"' in page


def test_another_users_run_pages_are_404(client, other_user, api):
    dataset = upload_prompts(api, PROMPTS[:4])
    run = api.post("/api/runs", {"name": "mine", "dataset": dataset["id"],
                                 "base_model": "tiny-llama",
                                 "rewards": [{"type": "length", "target": 9}]},
                   content_type="application/json").json()
    client.force_login(other_user)
    for url in (f"/runs/{run['id']}/", f"/runs/{run['id']}/samples/",
                f"/runs/{run['id']}/checkpoints/", f"/runs/{run['id']}/status/"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/runs/{run['id']}/cancel/").status_code == 404
    assert Run.objects.get().status == "queued"


def test_cancel_from_the_page_answers_htmx_with_the_status_fragment(signed_in, api):
    dataset = upload_prompts(api, PROMPTS[:4])
    run = api.post("/api/runs", {"name": "mine", "dataset": dataset["id"],
                                 "base_model": "tiny-llama",
                                 "rewards": [{"type": "length", "target": 9}]},
                   content_type="application/json").json()
    response = signed_in.post(f"/runs/{run['id']}/cancel/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and 'id="status-card"' in html and "cancelled" in html
    assert "<html" not in html  # a fragment, not the page
