"""Settings, read once at the edge (CLI, server) and passed down.

Sources, highest priority first: keyword arguments, ``OPENSTI_*`` environment
variables, the TOML file named by ``--config`` or ``OPENSTI_CONFIG``, the defaults.
TOML keys are the field names without the prefix (``data_dir = "/srv/opensti"``).
There is deliberately no module-level settings object: call :func:`load_settings`
in an entry point and hand the result to whatever needs it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from opensti.core.bounds import check_x5u
from opensti.core.errors import InvalidInput

__all__ = ["CONFIG_ENV", "Settings", "load_settings", "split_host_port"]

#: The environment variable naming the TOML file when ``--config`` is not given.
CONFIG_ENV = "OPENSTI_CONFIG"

# The TOML file of the load_settings() call in progress; a context variable rather
# than a class attribute so concurrent loads (tests) cannot see each other's file.
_toml_file: ContextVar[Path | None] = ContextVar("opensti_toml_file", default=None)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
#: A list from TOML, or from the environment as comma-separated words.
WordList = Annotated[list[str], NoDecode]

MAX_WORKERS = 64


def _cores_for_auto(value: object) -> object:
    """``auto``: one process per core this one may run on, at most :data:`MAX_WORKERS`.
    That is its CPU affinity: a CPU set given to a container counts, a CPU quota
    (``docker --cpus``) does not."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return min(len(os.sched_getaffinity(0)), MAX_WORKERS)
    return value


#: ``opensti serve``'s process count: a number, or ``auto``.
WorkerCount = Annotated[int, BeforeValidator(_cores_for_auto), Field(ge=1, le=MAX_WORKERS)]
WORKER_COUNT: TypeAdapter[int] = TypeAdapter(WorkerCount)


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "opensti"


class Settings(BaseSettings):
    """Everything configurable. Other packages add their fields here, typed and defaulted."""

    model_config = SettingsConfigDict(
        env_prefix="OPENSTI_", extra="forbid", validate_default=True, frozen=True
    )

    #: Where the embedded database, the secret key file and generated files live.
    data_dir: Path = Field(default_factory=_default_data_dir)
    #: Any SQLAlchemy URL; empty means SQLite at ``<data_dir>/opensti.db``.
    database_url: str = ""
    #: Base64url of 32 random bytes; when unset a 0600 ``secret.key`` in data_dir is used.
    secret_key: SecretStr | None = None
    #: Public base URL of the STI-CR repository (the x5u prefix), e.g. behind a CDN.
    public_base_url: str | None = None
    #: Upper bound of the STI-CR's Cache-Control max-age (it is also bounded by the
    #: certificate's remaining life).
    sti_cr_max_age: int = Field(default=86_400, ge=0)
    #: How often the STI-CR reloads the published chains from the database.
    sti_cr_refresh_seconds: float = Field(default=30.0, gt=0)
    log_level: LogLevel = "INFO"
    #: Regular expression an SPC must match in full; unset means the US OCN form.
    spc_pattern: str | None = None
    #: Days the SIP message log keeps a call; 0 keeps every call.
    call_log_retention_days: int = Field(default=30, ge=0)
    #: Calls waiting for the log writer before new ones are dropped (and counted).
    call_log_queue_size: int = Field(default=100_000, ge=1)
    #: Most calls written in one transaction.
    call_log_batch_size: int = Field(default=500, ge=1)
    #: Extra CA bundle (PEM) for HTTPS to STI-CAs and the STI-PA, e.g. a local sandbox's
    #: TLS root; unset means the system roots.
    tls_ca_file: Path | None = None
    #: STI-PA certificates (or their roots) trusted to sign SPC tokens (PEM file).
    stipa_trust_anchors: Path | None = None
    #: STI-CA roots an issued chain must lead to (the STI-PA trust list, PEM file);
    #: unset means the trust list fetched from the entry's STI-PA.
    ca_trust_anchors: Path | None = None
    #: Verification: the STI-PA's published trust list (a PEM bundle over HTTP(S)),
    #: used by ``opensti serve`` when ``ca_trust_anchors`` is unset.
    ca_trust_list_url: str | None = None
    #: Verification: how often the trust list (file or URL) is read again; a failed
    #: read keeps the last good list.
    ca_trust_refresh_seconds: float = Field(default=3600.0, gt=0)
    #: How often ``opensti serve`` (with its worker) fetches the entries' rcd logos
    #: again and stores a changed rcdi digest; a failed fetch keeps the last digest.
    rcd_icon_refresh_seconds: float = Field(default=3600.0, gt=0)
    #: Subject O of the certificate requests.
    organization: str = "opensti"
    #: SIP: a verification slower than this is answered No-TN-Validation (seconds).
    sip_verify_timeout: float = Field(default=5.0, gt=0)
    #: SIP: concurrent verifications per worker; beyond it INVITEs get 503.
    sip_max_in_flight: int = Field(default=10_000, ge=1)
    #: SIP over UDP: a verification still running after this many seconds sends
    #: 100 Trying first (RFC 3261 17.2.1 asks for 200 ms); 0 sends none.
    sip_trying_delay: float = Field(default=0.2, ge=0)
    #: SIP over UDP: seconds a final response is kept for retransmissions (64*T1).
    sip_transaction_lifetime: float = Field(default=32.0, gt=0)
    #: SIP over UDP: answered transactions kept per listener (about 1 KiB each).
    sip_max_transactions: int = Field(default=65_536, ge=1)
    #: SIP: take the called number from the Request-URI instead of To.
    sip_dest_from_request_uri: bool = False
    #: Verification (x5u policy, docs/verification.md): fetch ``http://`` x5u too.
    x5u_allow_http: bool = False
    #: Verification: x5u hosts (fnmatch patterns) or networks (CIDR) that may resolve
    #: to private or loopback addresses, e.g. a carrier's internal STI-CR; TOML list or
    #: comma-separated in the environment.
    x5u_private_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    #: Verification: x5u hosts (fnmatch patterns) never fetched.
    x5u_deny_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    #: Verification: accept RSA-signed CA certificates (>= 2048 bits, SHA-256) in a
    #: path, e.g. the older Neustar chain; the leaf key and PASSporT stay ES256.
    verify_rsa_ca: bool = True
    # -- the doors (see README "Security") -------------------------------------------
    #: STIR API and /metrics: source addresses or networks let in without a token.
    stir_allow_networks: WordList = Field(default_factory=list)
    #: STIR API: CA bundle (PEM) whose client certificates are let in (mutual TLS).
    stir_client_ca_file: Path | None = None
    #: How often ``serve`` looks for a renewed --tls-cert/--tls-key or a changed client CA
    #: file to load (seconds).
    tls_reload_seconds: float = Field(default=30.0, gt=0)
    #: Reverse proxies whose X-Forwarded-For/-Proto are believed (addresses or networks);
    #: empty: forwarded headers are ignored, the peer address is the client.
    trusted_proxies: WordList = Field(default_factory=list)
    #: The public STI-CR listener, ``host:port``; unset, it shares the internal one.
    sti_cr_listen: str | None = None
    #: ``opensti serve``: processes answering HTTP (the STIR API above all) and SIP on
    #: the same sockets; one per core (``auto``) uses the machine. Renewals run in the
    #: first only.
    workers: WorkerCount = 1

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        toml_file = _toml_file.get()
        if toml_file is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=toml_file),)
        return sources

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("public_base_url", mode="after")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        try:  # it becomes the x5u prefix: nothing that could break the Identity header
            check_x5u(value.rstrip("/") + "/sti-cr/1.pem", allow_http=True)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return value.rstrip("/")

    @field_validator("x5u_private_hosts", "x5u_deny_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("x5u_private_hosts", mode="after")
    @classmethod
    def _check_private_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError as exc:
                    raise ValueError(f"{entry!r} is not a network: {exc}") from None
        return value

    @field_validator("stir_allow_networks", "trusted_proxies", mode="before")
    @classmethod
    def _split_words(cls, value: object) -> object:
        if isinstance(value, str):
            return [word for word in re.split(r"[\s,]+", value) if word]
        return value

    @field_validator("stir_allow_networks", "trusted_proxies", mode="after")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for word in value:
            try:
                ipaddress.ip_network(word, strict=False)
            except ValueError:
                raise ValueError(f"not an address or network: {word!r}") from None
        return value

    @field_validator("sti_cr_listen", mode="after")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value

    @field_validator("spc_pattern", mode="after")
    @classmethod
    def _check_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _default_database_url(self) -> Settings:
        if not self.database_url:
            # The model is frozen: this is the one place a value is derived after parsing.
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'opensti.db'}")
        return self

    @property
    def secret_key_file(self) -> Path:
        return self.data_dir / "secret.key"


def split_host_port(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``; ValueError says what is wrong."""
    host, _, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not host:port: {value!r}")
    return host, int(port)


def load_settings(
    config_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: object,
) -> Settings:
    """Build the settings once; raise :class:`InvalidInput` with the offending field.

    ``config_file`` (the ``--config`` option) wins over ``OPENSTI_CONFIG``. ``environ``
    is only consulted for ``OPENSTI_CONFIG``; field values always come from the real
    process environment, as pydantic-settings reads it.
    """
    env = os.environ if environ is None else environ
    if config_file is None and env.get(CONFIG_ENV):
        config_file = Path(env[CONFIG_ENV])
    if config_file is not None:
        _check_toml(config_file)
    token = _toml_file.set(config_file)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidInput(f"invalid configuration: {_first_error(exc)}") from None
    finally:
        _toml_file.reset(token)


def _check_toml(path: Path) -> None:
    """Fail clearly on a missing or malformed file (the TOML source would ignore it)."""
    try:
        with path.open("rb") as handle:
            tomllib.load(handle)
    except OSError as exc:
        raise InvalidInput(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"config file {str(path)!r} is not UTF-8 text") from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "settings"
        return f"{where}: {first.get('msg', exc)}"
    return str(exc)
