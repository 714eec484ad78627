#!/usr/bin/env python
"""Django's command-line utility. On a machine where ``make run`` made the local secret key
(``var/secret-key``), commands use it when ``DJANGO_SECRET_KEY`` is not set, so the README's
``manage.py create_api_token alice`` works as written; production sets the variable."""
import os
import sys
from pathlib import Path


def _local_secret_key() -> None:
    if os.environ.get("DJANGO_SECRET_KEY"):
        return
    var = Path(os.environ.get("RLHF_VAR_DIR") or Path(__file__).resolve().parent / "var")
    key_file = var / "secret-key"
    if key_file.is_file():
        os.environ["DJANGO_SECRET_KEY"] = key_file.read_text().strip()


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    _local_secret_key()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
