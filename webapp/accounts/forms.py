from typing import Any

from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    """Django's sign-up form with help texts a person reads once, each under its field."""

    class Meta(UserCreationForm.Meta):
        fields = ("username",)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["username"].help_text = "Letters, digits and @ . + - _ (at most 150)."
        self.fields["password2"].label = "Password again"
        self.fields["password2"].help_text = ""
        for name, autocomplete in (("username", "username"), ("password1", "new-password"),
                                   ("password2", "new-password")):
            self.fields[name].widget.attrs["autocomplete"] = autocomplete
