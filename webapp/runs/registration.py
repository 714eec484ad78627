"""Registering a model directory (staff users, in the models page or ``POST /api/models``):
the directory is checked as the engine would load it (config, safetensors weights, a
tokenizer; no pickle weights, no remote code) before anything is stored."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from training.model_files import Refused, inspect_model_dir
from webapp.errors import Forbidden, Invalid, WrongState
from webapp.runs.models import RegisteredModel
from webapp.runs.registry import BUNDLED, HF_PREFIX, MINILM
from webapp.text import clean_name

PATH_MAX_CHARS = 1000
RESERVED_PREFIXES = (HF_PREFIX, "ckpt-")


def _directory(path: Any) -> Path:
    if not isinstance(path, str) or not path.strip():
        raise Invalid("Give the directory's absolute path on the server.",
                      fields={"path": "required"})
    if len(path) > PATH_MAX_CHARS or "\x00" in path:
        raise Invalid(f"The path must be at most {PATH_MAX_CHARS} characters.",
                      fields={"path": "too long"})
    folder = Path(path.strip())
    if not folder.is_absolute():
        raise Invalid(f"'{path}' is not an absolute path; the workers read it as it is, so "
                      "start it with /.", fields={"path": "not absolute"})
    if not folder.is_dir():
        raise Invalid(f"{folder} is not a directory on this server (the workers must see it "
                      "at the same path).", fields={"path": "not a directory"})
    return folder.resolve()


def _model_id(name: str, wanted: Any) -> str:
    model_id = slugify(str(wanted or name))[:100]
    if not model_id:
        raise Invalid("The model needs a name with letters or digits.",
                      fields={"name": "no usable id"})
    taken = (model_id in BUNDLED or model_id == MINILM or model_id in settings.LOCAL_MODELS
             or model_id.startswith(RESERVED_PREFIXES)
             or RegisteredModel.objects.filter(model_id=model_id).exists())
    if taken:
        raise WrongState(f"The id '{model_id}' is taken; choose another name.",
                         fields={"name": "taken"})
    return model_id


def model_register(*, user: AbstractBaseUser | AnonymousUser, path: Any, name: Any,
                   model_id: Any = None) -> RegisteredModel:
    """Register the model directory at ``path`` for every user, as ``model_id`` (by default
    the name's slug). Forbidden for other than staff; Invalid naming the reason when the
    engine may not load it; WrongState when the id is taken."""
    if not getattr(user, "is_staff", False):
        raise Forbidden("Only staff users register model directories; ask an administrator.")
    folder = _directory(path)
    try:
        inspect_model_dir(folder)
    except Refused as exc:
        raise Invalid(f"{folder} cannot be registered: {exc}.", fields={"path": exc.reason}
                      ) from None
    clean = clean_name(name or folder.name, what="the model")
    try:
        with transaction.atomic():
            return RegisteredModel.objects.create(
                model_id=_model_id(clean, model_id), name=clean, path=str(folder),
                registered_by=user if getattr(user, "pk", None) else None)
    except IntegrityError:  # registered by someone else a moment ago
        raise WrongState("That id was registered a moment ago; choose another name.",
                         fields={"name": "taken"}) from None
