"""The launch form, generated from the config dataclass so the page, the API and the engine
share one list of hyperparameters, defaults, help texts and bounds."""
from __future__ import annotations

import dataclasses
from typing import Any

from django import forms

from training.algorithms import get_algorithm
from training.reward_types import get_reward_type, reward_types
from webapp.datasets.models import Dataset
from webapp.runs.registry import model_list

# Titles of the hyperparameter groups; an algorithm's own group is titled by its declaration.
GROUP_TITLES = {"schedule": "Schedule", "optimisation": "Optimisation", "sampling": "Sampling",
                "policy": "Policy update", "system": "System"}
MAX_REWARD_ROWS = 8


def group_title(group: str) -> str:
    spec = get_algorithm(group)
    return GROUP_TITLES.get(group) or (spec.title if spec else group)


def reward_form_types(user: Any) -> list[dict[str, Any]]:
    """Every reward type as the launch form draws it: an input per argument (a model
    argument as a select of the user's models of the kinds it takes)."""
    models = model_list(user=user)
    out = []
    for kind in reward_types():
        args = []
        for arg in kind.args:
            options = ([(m.id, m.name) for m in models if m.kind in kind.model_kinds]
                       if arg.kind == "model" else [(c, c) for c in arg.choices]
                       if arg.kind == "choice" else None)
            args.append({"name": arg.name, "kind": arg.kind, "help": arg.help,
                         "default": "" if arg.default is None else arg.default,
                         "placeholder": arg.placeholder, "options": options})
        out.append({"id": kind.id, "title": kind.title, "help": kind.help, "args": args})
    return out


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
    base_model = forms.ChoiceField(help_text="The policy to start from: a bundled model, one "
                                             "from the Hugging Face cache or a registered "
                                             "directory, or a checkpoint of an earlier run.")
    tags = forms.CharField(required=False, max_length=1000,
                           help_text="Comma-separated, to find and compare runs later "
                                     "(e.g. baseline, lr-sweep).")
    notes = forms.CharField(required=False, max_length=20_000,
                            widget=forms.Textarea(attrs={"rows": 2}),
                            help_text="What you are trying; shown on the run page.")

    def __init__(self, *args: Any, user: Any, algorithm: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        spec = get_algorithm(algorithm)
        assert spec is not None, algorithm  # the view picks a declared one
        self.algorithm, self.user, self.spec = algorithm, user, spec
        self.config_class = spec.config
        self.fields["dataset"].queryset = Dataset.objects.filter(
            owner_id=user.pk, kind__in=spec.dataset_kinds, hidden=False)
        if not self.is_bound and not self.initial.get("dataset"):
            # the newest that fits, so the form (and its estimate) starts from something real
            newest = self.fields["dataset"].queryset.order_by("-created_at", "-id").first()
            self.initial["dataset"] = newest.pk if newest else None
        self.fields["base_model"].choices = [
            (m.id, m.name) for m in model_list(user=user) if m.kind in spec.base_kinds]
        if spec.dataset_kinds != ("prompts",):
            self.fields["dataset"].help_text = ("Preference pairs or ranked lists (each ranking "
                                                "gives its K(K-1)/2 pairs).")
        if spec.produces == "reward":
            self.fields["base_model"].help_text = ("The backbone that gets a scalar head: a "
                                                   "policy, an encoder such as MiniLM, or a "
                                                   "reward model to keep fitting.")
        for f in self.config_class.hyperparameter_fields():
            self.fields[f"hp_{f.name}"] = _field_for(f)

    def hyperparameter_groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        groups: dict[str, list[forms.BoundField]] = {}
        for f in self.config_class.hyperparameter_fields():
            groups.setdefault(f.metadata["group"], []).append(self[f"hp_{f.name}"])
        return [(group_title(g), fields) for g, fields in groups.items()]

    def hyperparameters(self) -> dict[str, Any]:
        return {name[3:]: value for name, value in self.cleaned_data.items()
                if name.startswith("hp_")}


def rewards_from_post(data: Any) -> list[dict[str, Any]]:
    """The reward rows of the form (``reward-<i>-type``, and each argument of that type as
    ``reward-<i>-<type>-<arg>``), in order, blank rows skipped. Values stay as typed;
    services validate them with the engine's rules."""
    rows = []
    for i in range(MAX_REWARD_ROWS):
        kind = get_reward_type(data.get(f"reward-{i}-type") or "")
        if kind is None:
            if data.get(f"reward-{i}-type"):
                rows.append({"type": data[f"reward-{i}-type"]})  # named in the refusal
            continue
        row: dict[str, Any] = {"type": kind.id}
        weight = data.get(f"reward-{i}-weight", "").strip()
        row["weight"] = _number(weight) if weight else 1.0
        for arg in kind.args:
            value = data.get(f"reward-{i}-{kind.id}-{arg.name}", "")
            value = value if arg.kind == "regex" else value.strip()
            if value == "" and arg.default is not None:
                continue
            row[arg.name] = (_number(value, whole=arg.kind == "int")
                             if arg.kind in ("int", "float") else value)
        rows.append(row)
    return rows


def _number(text: str, *, whole: bool = False) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # left for validation to name
    return int(value) if whole and value.is_integer() else value
