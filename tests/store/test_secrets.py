"""Secrets are sealed at rest, bound to their column, and never shown."""

from __future__ import annotations

import base64
import os
import pickle
from pathlib import Path

import pytest

from opensti.core.errors import InvalidInput
from opensti.store import (
    DeploymentTaskKind,
    Secret,
    SecretBox,
    acme_account_eab_hmac_key,
    acme_account_key,
    add_certificate,
    add_deployment_task,
    certificate_key,
    create_acme_account,
    deployment_task_secret,
    entry_spc_token,
    get_acme_account,
    get_secret_setting,
    get_stipa_account,
    load_secret_box,
    put_secret_setting,
    set_entry_spc_token,
    set_stipa_account,
    stipa_password,
)
from opensti.store._secrets import KEY_FILE_NAME

from .conftest import NOW, add_ca, add_entry, db_bytes, key_pem


def test_secret_never_shows_its_value() -> None:
    secret = Secret.from_text("hunter2-très-secret")
    for shown in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert "hunter2" not in shown
    assert secret.reveal_text() == "hunter2-très-secret"
    assert secret == Secret.from_text("hunter2-très-secret")
    assert secret != Secret.from_text("other")
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_seal_and_open_round_trip_bound_to_purpose() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal(Secret(b"key material"), "acme_account.key")
    assert b"key material" not in sealed
    assert box.open(sealed, "acme_account.key").reveal() == b"key material"
    # Two seals of one value differ (random nonce), and a ciphertext moved to another
    # column does not open.
    assert sealed != box.seal(Secret(b"key material"), "acme_account.key")
    with pytest.raises(InvalidInput, match=r"cannot decrypt the stored stipa_account\.password"):
        box.open(sealed, "stipa_account.password")


def test_another_key_cannot_open() -> None:
    sealed = SecretBox(os.urandom(32)).seal(Secret(b"x"), "p")
    with pytest.raises(InvalidInput, match="secret key is not the one"):
        SecretBox(os.urandom(32)).open(sealed, "p")
    with pytest.raises(InvalidInput, match="known encrypted format"):
        SecretBox(os.urandom(32)).open(b"plain", "p")


def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "dir"
    first = load_secret_box(data_dir)
    key_file = data_dir / KEY_FILE_NAME
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert data_dir.stat().st_mode & 0o777 == 0o700
    sealed = first.seal(Secret(b"v"), "p")
    assert load_secret_box(data_dir).open(sealed, "p").reveal() == b"v"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_key_file_is_refused(tmp_path: Path, mode: int) -> None:
    load_secret_box(tmp_path)
    (tmp_path / KEY_FILE_NAME).chmod(mode)
    with pytest.raises(InvalidInput, match=rf"mode {mode:04o}.*chmod 600"):
        load_secret_box(tmp_path)


def test_key_from_the_environment_value(tmp_path: Path) -> None:
    text = SecretBox.generate_key_text()
    sealed = load_secret_box(tmp_path, text).seal(Secret(b"v"), "p")
    assert SecretBox(base64.urlsafe_b64decode(text + "=")).open(sealed, "p").reveal() == b"v"
    assert not (tmp_path / KEY_FILE_NAME).exists()
    with pytest.raises(InvalidInput, match="32 bytes"):
        load_secret_box(tmp_path, "c2hvcnQ")
    with pytest.raises(InvalidInput, match="base64url"):
        load_secret_box(tmp_path, "not base64 at all!")


@pytest.mark.db_dialect
def test_no_plaintext_secret_reaches_the_database_file(db, box, pki) -> None:  # type: ignore[no-untyped-def]
    account_key = key_pem()
    eab_key = Secret(b"c2VjcmV0LWVhYi1obWFjLWtleS12YWx1ZS0xMjM0NTY3OA")
    password = Secret.from_text("Pa$$w0rd-'quoted\"-<STIPA>")
    token = Secret(b"eyJhbGciOiJFUzI1NiJ9.SPC-TOKEN-PAYLOAD.c2ln")
    smtp = Secret.from_text("smtp-password-value")
    hook = Secret.from_text("webhook-hmac-value")
    cert_key, cert = pki.issue("123H")
    from opensti.sandbox.pki import private_key_pem

    cert_key_pem = Secret(private_key_pem(cert_key))
    with db.session() as session:
        add_ca(session, needs_eab=True)
        create_acme_account(
            session,
            box,
            name="acct",
            ca="sandbox",
            key_pem=account_key,
            eab_kid="kid-1",
            eab_hmac_key=eab_key,
        )
        set_stipa_account(session, box, account_id="123H", user_id="api-user", password=password)
    entry = add_entry(db, box)
    with db.session() as session:
        set_entry_spc_token(session, box, session.merge(entry), token)
        put_secret_setting(session, box, "smtp.password", smtp)
        add_deployment_task(
            session,
            box,
            entry.id,
            name="hook",
            kind=DeploymentTaskKind.WEBHOOK,
            config={"url": "https://hooks.example.test/x"},
            secret=hook,
        )
        add_certificate(
            session,
            box,
            entry.id,
            chain_pem=pki.chain_pem(cert),
            key_pem=cert_key_pem,
            now=NOW,
            activate=True,
        )
    db.dispose()

    stored = db_bytes(db)
    for secret in (account_key, eab_key, password, token, smtp, hook, cert_key_pem):
        value = secret.reveal()
        assert value not in stored
        # Also no recognisable fragment, e.g. the base64 body of a PEM key.
        if len(value) > 72:
            assert value[40:72] not in stored
    assert b"api-user" in stored  # the user id is not a secret, and proves we read the file

    with db.read_session() as session:
        account = get_acme_account(session, "acct")
        assert acme_account_key(box, account) == account_key
        assert acme_account_eab_hmac_key(box, account) == eab_key
        assert stipa_password(box, get_stipa_account(session, "123H")) == password
        assert entry_spc_token(box, session.merge(entry)) == token
        assert get_secret_setting(session, box, "smtp.password") == smtp
        from opensti.store import list_certificates, list_deployment_tasks

        assert deployment_task_secret(box, list_deployment_tasks(session, entry.id)[0]) == hook
        assert certificate_key(box, list_certificates(session, entry.id)[0]) == cert_key_pem
