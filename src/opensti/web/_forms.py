"""Reading submitted forms: trimmed text, check boxes, uploaded files with a size cap."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.datastructures import FormData, UploadFile

from opensti.core.errors import InvalidInput, OpenSTIError

__all__ = [
    "FieldErrors",
    "FormCheck",
    "checkbox",
    "duration",
    "duration_text",
    "optional",
    "text",
    "upload",
    "values_of",
]

_T = TypeVar("_T")


class FieldErrors(InvalidInput):
    """Every refused field of one form (field name -> message), reported at once."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


class FormCheck:
    """Runs the store's own checks field by field and keeps one message per field, so
    a form says everything that is wrong in one go instead of one error per submit."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def field(self, name: str, check: Callable[..., _T], *args: Any) -> _T | None:
        try:
            return check(*args)
        except OpenSTIError as exc:
            self.errors.setdefault(name, str(exc))
            return None

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)

    def done(self) -> None:
        """Raise :class:`FieldErrors` if any field was refused."""
        if self.errors:
            raise FieldErrors(dict(self.errors))


#: The largest file a form accepts (SPC token files and key PEMs are a few kB).
MAX_UPLOAD = 64 * 1024


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def optional(form: FormData, name: str) -> str | None:
    return text(form, name) or None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def duration(form: FormData, name: str, what: str) -> dt.timedelta | None:
    """A duration such as ``30d``, ``36h``, ``90m`` or ``45s``; None when left empty."""
    value = text(form, name).lower()
    if not value:
        return None
    match = _DURATION.fullmatch(value)
    if match is None:
        raise InvalidInput(f"{what} {value!r} is not a duration: write e.g. 30d, 36h, 90m or 45s")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def duration_text(seconds: float | None) -> str:
    """The largest whole unit that says ``seconds`` exactly (``2d``, ``36h``)."""
    if seconds is None:
        return ""
    for unit, size in _UNITS.items():
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def checkbox(form: FormData, name: str) -> bool:
    return form.get(name) in ("on", "1", "true", "yes")


async def upload(form: FormData, name: str, what: str) -> bytes | None:
    """The uploaded file's bytes, None when no file was chosen."""
    value = form.get(name)
    if not isinstance(value, UploadFile) or not value.filename:
        return None
    data = await value.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise InvalidInput(f"the {what} is larger than {MAX_UPLOAD // 1024} kB")
    return data or None


def values_of(form: FormData, *secret: str) -> dict[str, str]:
    """What to put back in the form after an error: text fields, never secrets or files."""
    return {
        key: value
        for key, value in form.items()
        if isinstance(value, str) and key not in secret and key != "csrf_token"
    }
