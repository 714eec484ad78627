"""The upload form on the datasets page. It checks only the shape of the request; the service
does the real validation, and its errors are put back on this form."""
from __future__ import annotations

from django import forms

from webapp.datasets.models import DatasetKind
from webapp.datasets.screening import ACCEPTED
from webapp.errors import ServiceError

# What each kind expects, shown beside the kind select.
KIND_HELP: dict[str, str] = {
    DatasetKind.PROMPTS: "A 'prompt' column: text, or chat messages "
                         "[{\"role\": \"user\", \"content\": \"...\"}]. Optional 'answer' "
                         "(a reference answer, for exact-match rewards).",
    DatasetKind.PREFERENCES: "'prompt', 'chosen' and 'rejected' (two different responses); "
                             "optional 'margin' (a number).",
    DatasetKind.RANKINGS: "'prompt', 'responses' (a list of at least 2) and 'ranking': one rank "
                          "per response (1 = best, equal numbers tie), or groups of response "
                          "indexes, best first, e.g. [[0, 2], [1]]. In CSV, lists are JSON "
                          "text.",
}


class DatasetUploadForm(forms.Form):
    file = forms.FileField(help_text=f"{ACCEPTED}.")
    name = forms.CharField(max_length=200, required=False,
                           help_text="Defaults to the file name.")
    kind = forms.ChoiceField(choices=DatasetKind.choices)

    def add_service_error(self, exc: ServiceError) -> None:
        """Field errors go on their fields; the rest (columns, rows) is in ``exc.detail``."""
        for name, message in (exc.fields or {}).items():
            if name in self.fields:
                self.add_error(name, message)
