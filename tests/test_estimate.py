"""Will it fit? The memory estimate against values computed by hand and against the peaks of
real runs of the tiny model; ``POST /api/runs/estimate`` judged against the workers' devices,
a run too large for every worker refused, and the launch form's estimate following its fields
in Chromium."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from types import SimpleNamespace

import pytest
from django.conf import settings

from tests.browser import chromium_page, sign_in
from tests.conftest import PROMPTS, upload_prompts
from tests.hf_cache import cache_model
from tests.training_helpers import ROOT, TINY_LLAMA
from training.algorithms import get_algorithm, validate_hyperparameters
from training.estimate import CPU_PROCESS_MB, MB, ModelShape, estimate
from webapp.runs.models import Run
from webapp.workers_presence import presence_client, presence_remove, presence_write

# A Llama-shaped toy: 2 layers, hidden 8, 2 heads of 4 (1 key-value head), MLP 16, vocab 10.
TOY = ModelShape(parameters=1000, hidden_size=8, layers=2, intermediate_size=16, heads=2,
                 kv_heads=1, head_dim=4, vocab_size=10, tied=False)


def _config(algorithm: str, **values):
    return get_algorithm(algorithm).config(**validate_hyperparameters(algorithm, values))


def test_what_the_run_keeps_is_counted_by_hand():
    config = _config("grpo", prompts_per_step=2, group_size=3, max_new_tokens=5, beta=0.04)

    found = estimate(config, TOY, device="cuda", bf16=False, prompt_tokens=7)

    parts = {k: v * MB for k, v in found.parts.items()}
    assert found.precision == "fp32"  # no bf16 on this GPU: auto stays fp32
    assert parts["weights"] == parts["reference"] == parts["gradients"] == 1000 * 4
    assert parts["optimizer"] == 2 * 1000 * 4
    # 2 layers x (k and v) x 1 head x 4 dims x 6 rows x (7 + 5) positions x 4 bytes, and a
    # step's float32 logits (6 rows x 10 words, twice)
    assert parts["kv_cache"] == 2 * 2 * 1 * 4 * 6 * 12 * 4 + 2 * 6 * 10 * 4
    assert parts["decode_copies"] == parts["runtime"] == 0  # a GPU: neither
    kept = sum(found.parts[k] for k in ("weights", "optimizer", "reference", "runtime"))
    sampling = found.parts["kv_cache"]
    training = max(found.parts["gradients"], found.parts["activations"])  # one pass: the larger
    assert found.micro_batch == 6
    assert found.peak_mb == pytest.approx(kept + max(sampling, training))  # a GPU reuses
    on_cpu = estimate(config, TOY, device="cpu", bf16=False, prompt_tokens=7)
    cpu_kept = kept + on_cpu.parts["runtime"]
    cpu_sampling = sampling + on_cpu.parts["decode_copies"]
    assert on_cpu.peak_mb == pytest.approx(cpu_kept + cpu_sampling + training)  # both add up


def test_lora_bf16_ppo_and_the_cpu_change_what_they_should():
    lora = estimate(_config("grpo", lora_rank=2), TOY, device="cpu", bf16=True, prompt_tokens=7)
    # A and B on q (8->8), k and v (8->4), o (8->8), gate and up (8->16), down (16->8)
    per_layer = (8 + 8) + 2 * (8 + 4) + (8 + 8) + 2 * (8 + 16) + (16 + 8)
    assert lora.parts["optimizer"] * MB == 2 * 2 * per_layer * 2 * 4  # float32 adapters
    assert lora.parts["reference"] == 0  # the base with the adapters off
    assert lora.parts["decode_copies"] * MB == 1000 * 4  # the CPU at fp32 lays weights out
    assert lora.parts["runtime"] == CPU_PROCESS_MB

    half = estimate(_config("grpo"), TOY, device="cuda", bf16=True, prompt_tokens=7)
    assert half.precision == "bf16" and half.parts["weights"] * MB == 1000 * 2

    ppo = estimate(_config("ppo"), TOY, device="cuda", bf16=False, prompt_tokens=7)
    backbone = 1000 - 10 * 8  # without the untied head
    assert ppo.parts["critic"] * MB == backbone * 4
    assert ppo.parts["gradients"] * MB == (1000 + backbone) * 4
    assert ppo.parts["reference"] * MB == 1000 * 4


def _measured_peak(algorithm: str, hyperparameters: dict) -> float:
    """A real two-step run of the tiny model in a process of its own (peak RSS is per
    process), as bench/estimate_memory.py measures it."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "estimate_memory.py"), "--one",
                           json.dumps(["tiny-llama", algorithm, hyperparameters])],
                          capture_output=True, text=True, check=True, cwd=ROOT, timeout=240)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("algorithm, hyperparameters", [
    ("grpo", {"prompts_per_step": 4, "group_size": 4, "max_new_tokens": 32}),
    ("ppo", {"prompts_per_step": 4, "max_new_tokens": 32, "ppo_epochs": 1}),
])
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(algorithm, hyperparameters):
    sys.path.insert(0, str(ROOT))
    from bench.estimate_memory import estimated

    guess = estimated("tiny-llama", algorithm, hyperparameters)
    measured = _measured_peak(algorithm, hyperparameters)

    assert abs(guess / measured - 1) < 0.25, (guess, measured)


@pytest.fixture
def gpu_worker():
    """A worker with one 16 GB GPU, as its presence says (no GPU here: written directly)."""
    name = "gpu-16gb@test-estimate"
    presence_write(presence_client(), name=name, queues=["training"], pid=1, devices=[
        {"type": "cuda", "index": 0, "name": "Tesla V100-SXM2-16GB", "total_mb": 16384,
         "free_mb": 16000, "bf16": False, "capability": "7.0"}])
    yield name
    presence_remove(presence_client(), name)


@pytest.fixture
def huge_model():
    """A model with a 70B Llama's shape in the cache: its card is read from the config and the
    safetensors header, which claims the tensors (no weights behind them: nothing loads it)."""
    folder = ROOT / "var" / "test" / "huge-model-src"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192,
        "num_hidden_layers": 80, "intermediate_size": 28672, "num_attention_heads": 64,
        "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
        "tie_word_embeddings": False}))
    header = json.dumps({"w": {"dtype": "BF16", "shape": [70_000_000_000],
                               "data_offsets": [0, 0]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    (folder / "tokenizer.json").write_text("{}")
    cache_model(settings.HF_HUB_CACHE, "big-org/llama-70b-shape", folder)
    yield "hf:big-org/llama-70b-shape"
    import shutil

    shutil.rmtree(settings.HF_HUB_CACHE / "models--big-org--llama-70b-shape")


def _body(dataset: int, base_model: str, **hyperparameters) -> str:
    return json.dumps({"name": "sized", "algorithm": "grpo", "dataset": dataset,
                       "base_model": base_model, "rewards": [{"type": "length", "target": 20}],
                       "hyperparameters": hyperparameters})


def test_the_api_names_the_workers_that_can_hold_the_run(api, gpu_worker):
    dataset = upload_prompts(api, PROMPTS[:4])

    found = api.post("/api/runs/estimate", _body(dataset["id"], "tiny-llama"),
                     content_type="application/json").json()

    assert gpu_worker in found["fits"] and found["warning"] is None
    assert found["device"] == "cuda" and found["precision"] == "fp32"  # a V100: no bf16
    assert set(found["parts"]) >= {"weights", "gradients", "optimizer", "reference", "critic",
                                   "kv_cache", "activations"}
    parts = found["parts"]
    kept = sum(parts[k] for k in ("weights", "optimizer", "reference", "critic",
                                  "reward_models", "runtime"))
    sampling = parts["kv_cache"] + parts["decode_copies"]
    one_pass = max(parts["gradients"], parts["activations"])  # or their sum when split
    assert kept + max(sampling, one_pass) - 2 <= found["peak_mb_per_device"] <= \
        kept + max(sampling, parts["gradients"] + parts["activations"]) + 2  # a GPU
    assert not Run.objects.exists()  # an estimate stores nothing


def test_a_run_too_large_for_every_worker_is_refused_saying_what_to_change(
        api, gpu_worker, huge_model):
    dataset = upload_prompts(api, PROMPTS[:4])

    found = api.post("/api/runs/estimate", _body(dataset["id"], huge_model),
                     content_type="application/json").json()
    refused = api.post("/api/runs", _body(dataset["id"], huge_model),
                       content_type="application/json")

    assert gpu_worker not in found["fits"] and "LoRA" in found["warning"]
    assert found["peak_mb_per_device"] > 500_000  # 70B parameters in fp32, and a reference
    assert refused.status_code == 422
    assert refused.json()["fields"] == {"base_model": "too large for every worker"}
    assert not Run.objects.exists()


def test_bad_settings_are_named_not_estimated(api):
    dataset = upload_prompts(api, PROMPTS[:4])

    response = api.post("/api/runs/estimate", _body(dataset["id"], "tiny-llama", group_size=0),
                        content_type="application/json")

    assert response.status_code == 422 and "hyperparameters.group_size" in response.json()["fields"]


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_the_launch_form_shows_the_estimate_and_follows_its_fields(
        live_server, api, user, transactional_db, gpu_worker):
    dataset = upload_prompts(api, PROMPTS[:4])
    with chromium_page(timeout_ms=20_000) as tab:
        sign_in(tab, live_server.url)
        tab.goto(live_server.url + "/runs/new/")
        assert tab.input_value("#id_dataset") == str(dataset["id"])  # the newest, picked
        tab.select_option("#id_base_model", "tiny-llama")
        tab.wait_for_selector("#estimate-peak")
        first = _peak(tab)
        assert gpu_worker in tab.inner_text("#estimate-fits")

        tab.fill("#id_hp_lora_rank", "8")  # adapters: no reference, AdamW states for them only
        tab.dispatch_event("#id_hp_lora_rank", "change")
        tab.wait_for_function(f"() => {{ const e = document.querySelector('#estimate-peak strong');"
                              f" return e && parseInt(e.innerText.replace(/\\D/g, '')) < "
                              f"{first}; }}")

        assert _peak(tab) < first
        if os.environ.get("PAGE_SCREENSHOTS"):  # for a look: the form with its estimate
            tab.locator("#estimate-card").screenshot(
                path=os.path.join(os.environ["PAGE_SCREENSHOTS"], "estimate-card.png"))


def _peak(tab) -> int:
    return int("".join(c for c in tab.inner_text("#estimate-peak strong") if c.isdigit()))


def test_a_shape_reads_from_a_real_config():
    config = json.loads((TINY_LLAMA / "config.json").read_text())

    shape = ModelShape.from_config(config, 3_219_776)

    assert shape.as_config().__dict__ == SimpleNamespace(
        hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, vocab_size=49152).__dict__
    assert shape.tied


def test_the_forms_estimate_names_what_keeps_it_from_estimating(client, api, user):
    dataset = upload_prompts(api, PROMPTS[:4])
    client.force_login(user)
    form = client.get("/runs/new/").context["form"]
    data = {"algorithm": "grpo", "name": "", "dataset": dataset["id"], "base_model": "tiny-llama",
            "reward-0-type": "length", "reward-0-weight": "1.0", "reward-0-length-target": "200",
            **{f"hp_{k[3:]}": v for k, v in form.initial.items() if k.startswith("hp_")}}
    data |= {n: f.initial for n, f in form.fields.items()
             if n.startswith("hp_") and f.initial is not None and n not in data}

    fine = client.post("/runs/new/estimate/", data).content.decode()
    broken = client.post("/runs/new/estimate/", data | {"hp_group_size": "0"}).content.decode()

    assert 'id="estimate-peak"' in fine and "MB" in fine
    assert "No estimate yet" in broken and "group_size" in broken
