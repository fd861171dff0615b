"""Reading submitted forms: trimmed text, check boxes, uploaded files with a size cap."""

from __future__ import annotations

from starlette.datastructures import FormData, UploadFile

from opensti.core.errors import InvalidInput

__all__ = ["checkbox", "optional", "text", "upload", "values_of"]

#: The largest file a form accepts (SPC token files and key PEMs are a few kB).
MAX_UPLOAD = 64 * 1024


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def optional(form: FormData, name: str) -> str | None:
    return text(form, name) or None


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
