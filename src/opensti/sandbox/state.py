"""One sandbox instance: configuration, database, PKI, nonces and fault switches.

Both apps (STI-PA and STI-CA) and the admin endpoints share this object; the CLI's
``add-provider`` and ``add-eab`` use it without starting a server.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import select, update

from opensti.core.errors import Conflict, NotFound
from opensti.sandbox.authority import SandboxPKI, SandboxURLs
from opensti.sandbox.config import ProviderConfig, SandboxConfig
from opensti.sandbox.jws import b64url_encode
from opensti.sandbox.store import (
    ApiUser,
    Certificate,
    EABKey,
    Provider,
    SandboxStore,
    SPCRecord,
    SPCToken,
    hash_password,
    password_matches,
    utcnow,
)

__all__ = ["FaultMode", "Faults", "NonceStore", "Sandbox"]

FaultMode = Literal["ok", "refuse", "delay"]
Role = Literal["ca", "stipa"]


class NonceStore:
    """Replay nonces (RFC 8555 section 6.5): each one is accepted once, then forgotten.

    Kept in memory: after a restart old nonces are refused with ``badNonce`` and
    clients retry with a fresh one, as the RFC expects.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._nonces: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def issue(self) -> str:
        nonce = secrets.token_urlsafe(16)
        with self._lock:
            self._nonces[nonce] = None
            while len(self._nonces) > self._capacity:
                self._nonces.popitem(last=False)
        return nonce

    def consume(self, nonce: object) -> bool:
        with self._lock:
            return isinstance(nonce, str) and self._nonces.pop(nonce, 0) is None


@dataclass
class RoleFault:
    mode: FaultMode = "ok"
    delay: float = 0.0


@dataclass
class Faults:
    """Fault injection: a random failure share, per-role refuse/delay switches, and two
    refusals a service answers on its own terms: the STI-PA declining SPC tokens, the CA
    issuing certificates that miss the SHAKEN profile (a non-SHAKEN policy OID, or no
    TNAuthList)."""

    fail_rate: float = 0.0
    refuse_tokens: bool = False
    bad_profile: bool = False
    no_tnauthlist: bool = False
    roles: dict[str, RoleFault] = field(
        default_factory=lambda: {"ca": RoleFault(), "stipa": RoleFault()}
    )
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def set(self, role: Role, mode: FaultMode, delay: float = 0.0) -> None:
        self.roles[role] = RoleFault(mode, delay)

    def decide(self, role: Role) -> RoleFault:
        """What to do with the next request of ``role``."""
        fault = self.roles[role]
        if fault.mode == "ok" and self.fail_rate and self._random.random() < self.fail_rate:
            return RoleFault("refuse")
        return fault

    def to_dict(self) -> dict[str, object]:
        return {
            "fail_rate": self.fail_rate,
            "refuse_tokens": self.refuse_tokens,
            "bad_profile": self.bad_profile,
            "no_tnauthlist": self.no_tnauthlist,
            **{role: {"mode": f.mode, "delay": f.delay} for role, f in self.roles.items()},
        }


class Sandbox:
    """The state behind one running (or offline) sandbox."""

    def __init__(
        self,
        config: SandboxConfig,
        base_url: str,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self.clock = clock
        self.urls = SandboxURLs(base_url.rstrip("/"))
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = SandboxStore(config.data_dir / "sandbox.sqlite3")
        self.pki = SandboxPKI(self.store, self.urls, clock())
        self.nonces = NonceStore()
        self.faults = Faults(fail_rate=config.fail_rate)
        for provider in config.all_providers:
            self.add_provider(provider)

    def now(self) -> dt.datetime:
        return self.clock()

    def close(self) -> None:
        self.store.close()

    # STI-PA administration

    def add_provider(self, provider: ProviderConfig) -> None:
        """Create or update a provider, its SPCs and API users (passwords hashed)."""
        with self.store.session() as session:
            session.merge(Provider(account_id=provider.account_id, name=provider.name))
            session.flush()
            for code in provider.spcs:
                record = session.get(SPCRecord, code)
                if record is not None and record.account_id != provider.account_id:
                    raise Conflict(f"SPC {code} belongs to account {record.account_id}")
                if record is None:
                    session.add(SPCRecord(code=code, account_id=provider.account_id))
            for user in provider.users:
                existing = session.get(ApiUser, user.user_id)
                if existing is not None and existing.account_id != provider.account_id:
                    raise Conflict(f"user {user.user_id} belongs to another account")
                if existing is None:
                    session.add(
                        ApiUser(
                            user_id=user.user_id,
                            account_id=provider.account_id,
                            password_hash=hash_password(user.password),
                        )
                    )
                elif not password_matches(user.password, existing.password_hash):
                    existing.password_hash = hash_password(user.password)

    def revoke_spc(self, code: str) -> list[str]:
        """De-authorise an SPC: no more tokens, tokens issued are refused by the CA,
        and every certificate issued for it goes on the CRL. Returns revoked serials."""
        now = self.now()
        with self.store.session() as session:
            record = session.get(SPCRecord, code)
            if record is None:
                raise NotFound(f"unknown SPC {code}")
            record.revoked_at = record.revoked_at or now
            session.execute(
                update(SPCToken)
                .where(SPCToken.spc == code, SPCToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            certs = session.scalars(
                select(Certificate).where(Certificate.spc == code, Certificate.revoked_at.is_(None))
            ).all()
            for cert in certs:
                cert.revoked_at = now
                cert.revocation_reason = 9  # privilegeWithdrawn
            return [cert.serial for cert in certs]

    def token_revoked(self, jti: str, spc: str | None) -> bool:
        with self.store.session() as session:
            token = session.get(SPCToken, jti)
            record = session.get(SPCRecord, spc) if spc else None
            return bool((token is not None and token.revoked_at) or (record and record.revoked_at))

    # STI-CA administration

    def add_eab(self) -> tuple[str, str]:
        """A new External Account Binding credential: (kid, base64url HMAC key)."""
        kid = "kid-" + secrets.token_urlsafe(12)
        key = secrets.token_bytes(32)
        with self.store.session() as session:
            session.add(EABKey(kid=kid, hmac_key=key))
        return kid, b64url_encode(key)

    def revoke_serial(self, serial: str, reason: int = 0) -> None:
        with self.store.session() as session:
            cert = session.scalar(select(Certificate).where(Certificate.serial == serial.lower()))
            if cert is None:
                raise NotFound(f"no certificate with serial {serial}")
            if cert.revoked_at is not None:
                raise Conflict(f"certificate {serial} is already revoked")
            cert.revoked_at = self.now()
            cert.revocation_reason = reason
