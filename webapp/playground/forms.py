from __future__ import annotations

from typing import Any

from django import forms

from webapp.labeling.models import DEFAULT_TEMPERATURE, K_MAX, K_MIN, MAX_NEW_TOKENS_CAP
from webapp.playground.services import DEFAULT_MAX_NEW_TOKENS, PROMPT_MAX_CHARS
from webapp.runs.registry import model_list


class PlaygroundForm(forms.Form):
    model = forms.ChoiceField(help_text="A bundled model or a checkpoint of your runs; a "
                                        "checkpoint is answered beside its base model.")
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}),
                             max_length=PROMPT_MAX_CHARS,
                             help_text="Plain text; the model's chat template wraps it.")
    responses_per_prompt = forms.IntegerField(
        label="Completions (K)", min_value=K_MIN, max_value=K_MAX, initial=4,
        help_text=f"{K_MIN} to {K_MAX} from each model.")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=MAX_NEW_TOKENS_CAP,
                                        initial=DEFAULT_MAX_NEW_TOKENS,
                                        help_text="The longest completion, in tokens.")
    temperature = forms.FloatField(min_value=0.01, max_value=2, initial=DEFAULT_TEMPERATURE,
                                   help_text="Higher gives more varied completions.")

    def __init__(self, *args: Any, user: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m.id, m.name) for m in model_list(user=user)
                                        if m.kind == "policy"]
