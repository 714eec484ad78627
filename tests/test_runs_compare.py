"""Finding and comparing runs: list filters and ordering, stored summaries, the settings
diff, the compare endpoint and its permissions."""
from __future__ import annotations

import math

import pytest

from tests.runs_helpers import GRPO_HP, grpo_metrics, make_dataset, make_run
from webapp.runs import compare, summaries
from webapp.runs.models import Metric, Run, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(user):
    return make_dataset(user)


def test_the_summary_stored_step_by_step_matches_the_metrics(user, dataset):
    run = make_run(user, dataset, steps=30)
    stored = summaries.summary_of(run)
    rewards = [grpo_metrics(s)["reward/mean"] for s in range(1, 31)]
    assert stored["reward_final"] == pytest.approx(rewards[-1])
    assert stored["reward_best"] == pytest.approx(max(rewards))
    assert stored["kl_final"] == pytest.approx(0.03)
    assert stored["peak_mem_mb"] == pytest.approx(1300)
    assert stored["tokens_per_s"] == pytest.approx(256 * 30 / 300)  # tokens over seconds
    assert stored["wall_s"] == pytest.approx((run.finished_at - run.started_at).total_seconds())
    # The same figures from every stored metric row (the brute-force path).
    assert summaries.summary_refresh(run=run) == pytest.approx(stored)


def test_a_reward_model_runs_reward_is_its_held_out_accuracy(user):
    pairs = make_dataset(user, name="pairs", kind="preferences")
    accuracy = {1: 0.5, 2: 0.9, 3: 0.8}
    run = make_run(user, pairs, algorithm="reward_model", steps=3,
                   hyperparameters={"max_steps": 3},
                   rewards=[], metrics=lambda s: {"loss/train": 1 / s, "eval/accuracy":
                                                  accuracy[s], "perf/elapsed_s": float(s)})
    assert (run.reward_final, run.reward_best) == (0.8, 0.9)
    assert run.kl_final is None and run.tokens_per_s is None


def test_the_list_filters_sorts_and_carries_summary_and_attempts(api, user, dataset):
    other = make_dataset(user, name="other")
    low = make_run(user, dataset, name="alpha low", steps=3)
    high = make_run(user, dataset, name="beta high", steps=12,
                    metrics=lambda s: grpo_metrics(s, scale=2.0))
    make_run(user, other, name="alpha other dataset", steps=2, finish=RunStatus.FAILED)
    body = api.get("/api/runs?ordering=-reward_best").json()
    assert [r["name"] for r in body[:2]] == ["beta high", "alpha low"]
    assert body[0]["summary"]["reward_best"] == pytest.approx(high.reward_best)
    assert body[0]["attempts"][0] | {"started_at": None, "ended_at": None} == {
        "attempt": 1, "worker": "test-worker", "outcome": "succeeded",
        "resumed_from_step": None, "started_at": None, "ended_at": None}
    names = lambda q: [r["name"] for r in api.get("/api/runs?" + q).json()]  # noqa: E731
    assert names(f"dataset={dataset.pk}&ordering=name") == ["alpha low", "beta high"]
    assert names("q=ALPHA&ordering=name") == ["alpha low", "alpha other dataset"]
    Run.objects.filter(pk=low.pk).update(wall_s=5.0)
    Run.objects.filter(pk=high.pk).update(wall_s=None)  # no value: last either way
    assert names(f"dataset={dataset.pk}&ordering=wall_s")[0] == "alpha low"
    assert names(f"dataset={dataset.pk}&ordering=-wall_s")[0] == "alpha low"
    assert names("status=failed") == ["alpha other dataset"]
    assert names("algorithm=ppo") == []
    assert names("base_model=tiny-llama&limit=1&offset=1&ordering=created_at") == [
        "beta high"]
    assert low.pk in [r["id"] for r in api.get("/api/runs?ordering=reward_final").json()]


@pytest.mark.parametrize("query,field", [("ordering=password", "ordering"),
                                         ("algorithm=dpo", "algorithm"),
                                         ("status=lost", "status"), ("dataset=x", "dataset"),
                                         ("q=" + "a" * 300, "q")])
def test_a_bad_filter_is_a_422_naming_it(api, query, field):
    response = api.get("/api/runs?" + query)
    assert response.status_code == 422
    assert field in response.json()["fields"]


def test_the_diff_flags_exactly_the_settings_that_differ(user, dataset):
    other = make_dataset(user, name="other")
    base = make_run(user, dataset, steps=1)
    changed = make_run(user, other, steps=1,
                       hyperparameters=GRPO_HP | {"learning_rate": 3e-5, "kl_stop": 0.5},
                       rewards=[{"type": "length", "target": 100, "weight": 1.0},
                                {"type": "regex", "pattern": "^a", "weight": 0.5}])
    same = make_run(user, dataset, steps=1)
    rows = {r["field"]: r for r in compare.run_settings_diff([base, changed, same])}
    differing = {f for f, r in rows.items() if r["differs"]}
    assert differing == {"dataset", "rewards[0].target", "rewards[1].type",
                         "rewards[1].pattern", "rewards[1].weight",
                         "hyperparameters.learning_rate", "hyperparameters.kl_stop"}
    assert rows["hyperparameters.learning_rate"]["values"] == [1e-5, 3e-5, 1e-5]
    assert rows["rewards[1].pattern"]["values"] == [None, "^a", None]
    assert rows["algorithm"] == {"field": "algorithm", "values": ["grpo"] * 3,
                                 "differs": False}
    assert set(rows) >= {"algorithm", "base_model", "parent_checkpoint", "dataset",
                         "rewards[0].weight", "hyperparameters.group_size"}


def test_compare_returns_runs_diff_and_downsampled_series(api, user, dataset):
    a = make_run(user, dataset, name="a", steps=300)
    b = make_run(user, dataset, name="b", steps=40,
                 hyperparameters=GRPO_HP | {"learning_rate": 2e-5})
    body = api.get(f"/api/runs/compare?ids={a.pk},{b.pk}&points=50").json()
    assert [r["name"] for r in body["runs"]] == ["a", "b"]
    assert body["runs"][0]["summary"]["reward_final"] == pytest.approx(a.reward_final)
    assert [r["field"] for r in body["diff"] if r["differs"]] == [
        "hyperparameters.learning_rate"]
    series_a, series_b = body["series"][str(a.pk)], body["series"][str(b.pk)]
    assert set(series_a) == set(grpo_metrics(1))
    assert all(len(s["x"]) <= 50 for s in series_a.values())
    assert series_a["reward/mean"]["x"][0] == 1 and series_a["reward/mean"]["x"][-1] == 300
    assert series_b["kl/mean"]["x"] == list(range(1, 41))  # short: every point
    keyed = api.get(f"/api/runs/compare?ids={b.pk}&keys=kl/mean,reward/mean&x=time").json()
    assert set(keyed["series"][str(b.pk)]) == {"kl/mean", "reward/mean"}
    assert keyed["series"][str(b.pk)]["kl/mean"]["x"] == [10.0 * s for s in range(1, 41)]
    assert body["ratios"] is None


def test_compare_states_ppo_over_grpo_memory_and_throughput(api, user, dataset):
    grpo = make_run(user, dataset, name="grpo", steps=3)
    ppo = make_run(user, dataset, name="ppo", algorithm="ppo", steps=3,
                   hyperparameters={"max_steps": 3},
                   metrics=lambda s: grpo_metrics(s) | {"perf/peak_mem_mb": 2600.0,
                                                        "perf/tokens_total": 64.0 * s})
    ratios = api.get(f"/api/runs/compare?ids={grpo.pk},{ppo.pk}").json()["ratios"]
    assert ratios["peak_mem_mb_ppo_over_grpo"] == pytest.approx(2600 / 1030)
    assert ratios["tokens_per_s_ppo_over_grpo"] == pytest.approx(0.25)


@pytest.mark.parametrize("ids", ["{mine},{theirs}", "{theirs}", "{mine},999999", "+{mine}",
                                 "{mine}.0", "0{mine}", "{mine},x"])
def test_compare_naming_another_users_run_is_a_404(api, other_user, user, dataset, ids):
    mine = make_run(user, dataset, steps=1)
    theirs = make_run(other_user, make_dataset(other_user), steps=1)
    query = ids.format(mine=mine.pk, theirs=theirs.pk)
    response = api.get(f"/api/runs/compare?ids={query}")
    assert response.status_code == 404
    assert "theirs" not in response.content.decode() and response.json()["error"] == \
        "not_found"


@pytest.mark.parametrize("query,field", [("ids=", "ids"), ("ids={id}&points=5", "points"),
                                         ("ids={id}&points=999999", "points"),
                                         ("ids={id}&x=wall", "x"),
                                         ("ids=" + ",".join(str(i) for i in range(1, 30)),
                                          "ids")])
def test_bad_compare_parameters_are_422(api, user, dataset, query, field):
    run = make_run(user, dataset, steps=1)
    response = api.get("/api/runs/compare?" + query.format(id=run.pk))
    assert response.status_code == 422, response.content
    assert field in response.json()["fields"]


def test_metrics_with_points_downsample_the_whole_history(api, user, dataset):
    run = make_run(user, dataset, steps=120)
    body = api.get(f"/api/runs/{run.pk}/metrics?points=20").json()
    assert body["last_step"] == 120
    assert all(len(s["x"]) <= 20 for s in body["series"].values())
    peak = body["series"]["perf/peak_mem_mb"]
    assert max(peak["y"]) == 1000 + 10 * 120 and min(peak["y"]) == 1010
    assert api.get(f"/api/runs/{run.pk}/metrics?points=3").status_code == 422
    whole = api.get(f"/api/runs/{run.pk}/metrics?after=100").json()
    assert whole["series"]["kl/mean"]["x"] == list(range(101, 121))


def test_listing_200_runs_reads_no_metrics(api, user, dataset, django_assert_max_num_queries):
    for i in range(5):
        make_run(user, dataset, name=f"r{i}", steps=2)
    Metric.objects.all().delete()  # the list must not need them
    with django_assert_max_num_queries(5):  # auth, runs, their attempts, tags (+ token touch)
        body = api.get("/api/runs?ordering=-reward_final&limit=200").json()
    assert len(body) == 5 and all(not math.isnan(r["summary"]["reward_final"]) for r in body)
    assert Run.objects.count() == 5
