"""The "new batch" form. It checks the shape of the request; the service does the real
validation and its field errors are put back on this form."""
from __future__ import annotations

from typing import Any

from django import forms

from webapp.datasets.models import Dataset, DatasetKind
from webapp.errors import ServiceError
from webapp.labeling.models import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    K_MAX,
    K_MIN,
    MAX_NEW_TOKENS_CAP,
    MAX_PROMPTS_CAP,
)
from webapp.labeling.services import DEFAULT_K
from webapp.runs.registry import model_list


class BatchForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="A name to find the batch by.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(),
                                     help_text="A prompts dataset of yours.")
    model = forms.ChoiceField(help_text="The policy that writes the responses: a bundled "
                                        "model or a checkpoint of one of your runs.")
    responses_per_prompt = forms.IntegerField(
        min_value=K_MIN, max_value=K_MAX, initial=DEFAULT_K, label="Responses per prompt (K)",
        help_text=f"{K_MIN} to {K_MAX}; each ranking of K gives up to K(K-1)/2 pairs.")
    temperature = forms.FloatField(min_value=0.01, max_value=2, initial=DEFAULT_TEMPERATURE,
                                   help_text="Higher gives more varied responses.")
    top_p = forms.FloatField(min_value=0.01, max_value=1, initial=DEFAULT_TOP_P,
                             label="Top-p", help_text="Nucleus sampling; 1 keeps every token.")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=MAX_NEW_TOKENS_CAP,
                                        initial=DEFAULT_MAX_NEW_TOKENS,
                                        help_text="The longest response, in tokens.")
    max_prompts = forms.IntegerField(min_value=1, max_value=MAX_PROMPTS_CAP, required=False,
                                     help_text=f"Use the first N prompts; empty = all (at "
                                               f"most {MAX_PROMPTS_CAP}).")
    shared = forms.BooleanField(required=False, label="Shared",
                                help_text="Let every signed-in user see this batch and rank "
                                          "in it (for agreement between annotators).")

    def __init__(self, *args: Any, user: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["dataset"].queryset = Dataset.objects.filter(hidden=False, owner_id=user.pk,
                                                                 kind=DatasetKind.PROMPTS)
        self.fields["model"].choices = [(m.id, m.name) for m in model_list(user=user)
                                        if m.kind == "policy"]

    def add_service_error(self, exc: ServiceError) -> None:
        for name, message in (exc.fields or {}).items():
            if name in self.fields:
                self.add_error(name, message)
