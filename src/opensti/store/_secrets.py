"""Secrets at rest: AES-256-GCM with one key per installation.

The key comes from ``OPENSTI_SECRET_KEY`` (base64url of 32 bytes) or from a file
``secret.key`` in the data directory, created 0600 on first use. Each ciphertext is
bound to its purpose (``"acme_account.key"``...) as associated data, so a value copied
into another column does not decrypt. Plaintext only ever lives in a :class:`Secret`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from opensti.core.errors import InvalidInput

__all__ = ["KEY_FILE_NAME", "Secret", "SecretBox", "load_secret_box"]

KEY_FILE_NAME = "secret.key"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_VERSION = b"\x01"
_BASE64URL_BODY = re.compile(r"[A-Za-z0-9_-]*")


class Secret:
    """A secret value whose ``repr`` and ``str`` never show it; call :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError("Secret holds bytes; use Secret.from_text for a str")
        self._value = value

    @classmethod
    def from_text(cls, value: str) -> Secret:
        return cls(value.encode("utf-8"))

    def reveal(self) -> bytes:
        return self._value

    def reveal_text(self) -> str:
        return self._value.decode("utf-8")

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Secret is not serialized; reveal it explicitly")


class SecretBox:
    """Seals and opens column values with the installation key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise InvalidInput(f"the secret key must be {_KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_text(cls, text: str) -> SecretBox:
        """The key as written in OPENSTI_SECRET_KEY or the key file: base64url of 32 bytes."""
        return cls(_decode_key(text))

    @staticmethod
    def generate_key_text() -> str:
        return base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode("ascii").rstrip("=")

    def seal(self, secret: Secret, purpose: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, secret.reveal(), purpose.encode())

    def open(self, ciphertext: bytes, purpose: str) -> Secret:
        if ciphertext[:1] != _VERSION or len(ciphertext) < 1 + _NONCE_BYTES + 16:
            raise InvalidInput(f"stored {purpose} is not in a known encrypted format")
        nonce, body = ciphertext[1 : 1 + _NONCE_BYTES], ciphertext[1 + _NONCE_BYTES :]
        try:
            return Secret(self._aead.decrypt(nonce, body, purpose.encode()))
        except InvalidTag:
            raise InvalidInput(
                f"cannot decrypt the stored {purpose}: the secret key is not the one "
                "that encrypted it (check OPENSTI_SECRET_KEY or the secret.key file)"
            ) from None

    def open_optional(self, ciphertext: bytes | None, purpose: str) -> Secret | None:
        """For nullable columns: None stays None."""
        return None if ciphertext is None else self.open(ciphertext, purpose)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"


def decode_base64url(text: str) -> bytes:
    """Strict base64url, padding optional; ValueError on any other character."""
    body = text.rstrip("=")
    if len(text) - len(body) > 2 or not _BASE64URL_BODY.fullmatch(body):
        raise ValueError("not base64url")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def _decode_key(text: str) -> bytes:
    try:
        key = decode_base64url(text.strip())
    except ValueError:
        raise InvalidInput("the secret key is not base64url text") from None
    if len(key) != _KEY_BYTES:
        raise InvalidInput(
            f"the secret key must decode to {_KEY_BYTES} bytes, not {len(key)} "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return key


def load_secret_box(data_dir: Path, secret_key: str | None = None) -> SecretBox:
    """The key given (OPENSTI_SECRET_KEY) or the key file in ``data_dir``, made if absent."""
    if secret_key:
        return SecretBox.from_text(secret_key)
    return SecretBox.from_text(_read_or_create_key_file(data_dir / KEY_FILE_NAME))


def _read_or_create_key_file(path: Path) -> str:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    except OSError as exc:
        raise InvalidInput(
            f"cannot create secret key file {str(path)!r}: {exc.strerror or exc}"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(SecretBox.generate_key_text() + "\n")
    return _read_key_file(path)


def _read_key_file(path: Path) -> str:
    try:
        with path.open("r", encoding="ascii") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise InvalidInput(
                    f"secret key file {str(path)!r} has mode {stat.S_IMODE(mode):04o}: it must "
                    f"be readable by its owner only (run: chmod 600 {path})"
                )
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read secret key file {str(path)!r}: {exc}") from None
