"""The launch form, generated from the config dataclass so the page, the API and the engine
share one list of hyperparameters, defaults, help texts and bounds."""
from __future__ import annotations

import dataclasses
from typing import Any

from django import forms

from training.config import CONFIG_CLASSES
from webapp.datasets.models import Dataset
from webapp.runs.registry import BASE_KINDS, MINILM, model_list
from webapp.runs.services import DATASET_KINDS

GROUP_TITLES = {"schedule": "Schedule", "optimisation": "Optimisation", "sampling": "Sampling",
                "grpo": "GRPO", "ppo": "PPO", "reward_model": "Reward model", "system": "System"}
ALGORITHMS = [("grpo", "GRPO"), ("ppo", "PPO"), ("reward_model", "Reward model")]
REWARD_TYPES = [("length", "Length target"), ("regex", "Format regex"),
                ("exact_match", "Exact match"), ("reward_model", "Reward model")]
MAX_REWARD_ROWS = 8

# Starting points a person can apply with one click: the page's JS fills the fields and
# says what it changed. Keys are hyperparameters, or ``base_model`` for the model picked.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "grpo": {
        "Smoke test (tiny-llama)": {
            "base_model": "tiny-llama", "max_steps": 4, "prompts_per_step": 2,
            "group_size": 4, "max_new_tokens": 16},
        "Length control (seed article)": {
            "max_steps": 10, "prompts_per_step": 4, "group_size": 8, "max_new_tokens": 64,
            "learning_rate": 1e-5, "temperature": 0.8, "beta": 0.04},
        "DAPO clip-higher, no KL": {
            "epsilon_low": 0.2, "epsilon_high": 0.28, "beta": 0.0, "loss_type": "bnpo"},
        "Dr. GRPO": {"loss_type": "dr_grpo", "scale_rewards": "none"},
    },
    "ppo": {
        "Smoke test (tiny-llama)": {
            "base_model": "tiny-llama", "max_steps": 4, "prompts_per_step": 4,
            "minibatches": 2, "max_new_tokens": 16},
        "InstructGPT-style (adaptive KL)": {
            "kl_coef": 0.1, "kl_target": 6.0, "ppo_epochs": 4, "cliprange": 0.2,
            "gamma": 1.0, "lam": 0.95},
    },
    "reward_model": {
        "Smoke test (tiny-llama)": {"base_model": "tiny-llama", "epochs": 1,
                                    "batch_size": 8, "max_length": 128},
        "MiniLM encoder": {"base_model": MINILM, "epochs": 3, "batch_size": 16,
                           "learning_rate": 5e-5, "max_length": 256},
    },
}


def _field_for(f: dataclasses.Field[Any]) -> forms.Field:
    meta = f.metadata
    common = {"help_text": meta["help"], "initial": f.default, "label": f.name}
    if meta.get("choices"):
        return forms.ChoiceField(choices=[(c, c) for c in meta["choices"]], **common)
    if isinstance(f.default, bool):
        return forms.BooleanField(required=False, **common)
    bounds = {"min_value": meta.get("lo"), "max_value": meta.get("hi")}
    if isinstance(f.default, int):
        return forms.IntegerField(**bounds, **common)
    return forms.FloatField(required=not meta.get("nullable"), **bounds, **common)


class RunForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="A name to find the run by.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(),
                                     help_text="A prompts dataset; each step draws prompts "
                                               "from it.")
    base_model = forms.ChoiceField(help_text="The policy to start from: a bundled model or a "
                                             "checkpoint of an earlier run.")
    tags = forms.CharField(required=False, max_length=1000,
                           help_text="Comma-separated, to find and compare runs later "
                                     "(e.g. baseline, lr-sweep).")
    notes = forms.CharField(required=False, max_length=20_000,
                            widget=forms.Textarea(attrs={"rows": 2}),
                            help_text="What you are trying; shown on the run page.")

    def __init__(self, *args: Any, user: Any, algorithm: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.algorithm, self.user = algorithm, user
        self.config_class = CONFIG_CLASSES[algorithm]
        self.fields["dataset"].queryset = Dataset.objects.filter(
            owner_id=user.pk, kind__in=DATASET_KINDS[algorithm], hidden=False)
        self.fields["base_model"].choices = [
            (m.id, m.name) for m in model_list(user=user) if m.kind in BASE_KINDS[algorithm]]
        if algorithm == "reward_model":
            self.fields["dataset"].help_text = ("Preference pairs or ranked lists (each ranking "
                                                "gives its K(K-1)/2 pairs).")
            self.fields["base_model"].help_text = ("The backbone that gets a scalar head: a "
                                                   "policy, the MiniLM encoder, or a reward "
                                                   "model to keep fitting.")
        for f in self.config_class.hyperparameter_fields():
            self.fields[f"hp_{f.name}"] = _field_for(f)

    def hyperparameter_groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        groups: dict[str, list[forms.BoundField]] = {}
        for f in self.config_class.hyperparameter_fields():
            groups.setdefault(f.metadata["group"], []).append(self[f"hp_{f.name}"])
        return [(GROUP_TITLES.get(g, g), fields) for g, fields in groups.items()]

    def hyperparameters(self) -> dict[str, Any]:
        return {name[3:]: value for name, value in self.cleaned_data.items()
                if name.startswith("hp_")}


def rewards_from_post(data: Any) -> list[dict[str, Any]]:
    """The reward rows of the form (``reward-<i>-type`` ...), in order, blank rows skipped.
    Values stay as typed; services validate them with the engine's rules."""
    rows = []
    for i in range(MAX_REWARD_ROWS):
        kind = data.get(f"reward-{i}-type")
        if not kind:
            continue
        row: dict[str, Any] = {"type": kind}
        weight = data.get(f"reward-{i}-weight", "").strip()
        row["weight"] = _number(weight) if weight else 1.0
        if kind == "length":
            row["target"] = _number(data.get(f"reward-{i}-target", "").strip(), whole=True)
        elif kind == "regex":
            row["pattern"] = data.get(f"reward-{i}-pattern", "")
        elif kind == "exact_match":
            row["column"] = data.get(f"reward-{i}-column", "answer").strip()
        elif kind == "reward_model":
            row["model"] = data.get(f"reward-{i}-model", "")
        rows.append(row)
    return rows


def _number(text: str, *, whole: bool = False) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # left for validation to name
    return int(value) if whole and value.is_integer() else value
