"""Run-time settings as key/value rows (SMTP server, technical contact, renewal policy)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opensti.core.errors import InvalidInput
from opensti.store._models import Setting
from opensti.store._secrets import Secret, SecretBox

__all__ = [
    "delete_setting",
    "get_secret_setting",
    "get_setting",
    "put_secret_setting",
    "put_setting",
    "setting_keys",
]


def _check_key(key: str) -> str:
    if not 1 <= len(key) <= 128 or not key.replace(".", "").replace("_", "").isalnum():
        raise InvalidInput(f"setting key {key!r} must be 1-128 letters, digits, '.' or '_'")
    return key


def _row(session: Session, key: str) -> Setting:
    row = session.get(Setting, _check_key(key))
    if row is None:
        row = Setting(key=key)
        session.add(row)
    return row


def put_setting(session: Session, key: str, value: Any) -> None:
    """Any JSON value; for secrets use :func:`put_secret_setting`."""
    row = _row(session, key)
    row.value, row.value_ciphertext = value, None
    session.flush()


def get_setting(session: Session, key: str, default: Any = None) -> Any:
    row = session.get(Setting, _check_key(key))
    return default if row is None or row.value is None else row.value


def put_secret_setting(session: Session, box: SecretBox, key: str, value: Secret) -> None:
    row = _row(session, key)
    row.value, row.value_ciphertext = None, box.seal(value, f"setting.{key}")
    session.flush()


def get_secret_setting(session: Session, box: SecretBox, key: str) -> Secret | None:
    row = session.get(Setting, _check_key(key))
    return None if row is None else box.open_optional(row.value_ciphertext, f"setting.{key}")


def delete_setting(session: Session, key: str) -> bool:
    row = session.get(Setting, _check_key(key))
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def setting_keys(session: Session, prefix: str) -> list[str]:
    """The keys starting with ``prefix`` (one query for a family of per-entry rows)."""
    return list(
        session.scalars(select(Setting.key).where(Setting.key.startswith(prefix, autoescape=True)))
    )
