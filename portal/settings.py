"""Typed settings built from PORTAL_* environment variables: the only place that reads them."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A PORTAL_* variable holds a value the portal cannot use."""


@dataclass(frozen=True)
class Settings:
    # Where state lives. SQLite files go under var_dir unless a PostgreSQL URL is given.
    # ./var of a checkout; of an installed portal, ./var of the folder it is started from
    # (production sets PORTAL_VAR_DIR: deploy/portal.env.example).
    var_dir: Path = ROOT / "var" if (ROOT / "pyproject.toml").is_file() else Path("var").absolute()
    postgres_url: str = ""  # e.g. postgresql://user@127.0.0.1:5432/portal; empty = SQLite
    postgres_schema: str = "public"
    # Public base URL encoded in QR codes and feeds (what a phone opens).
    public_base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    # Meilisearch: an external server (url + key) or, for `portal demo`, a managed child.
    meili_url: str = ""
    meili_key: str = ""
    meili_index: str = "procedures"
    # Province identity; the QCVN 102 unit code of Tuyên Quang is not confirmed: configurable.
    province_code: str = "H60"
    province_name: str = "Tuyên Quang"
    # Office hours and the 15:00 cut-off (set by the province).
    office_hours: str = "07:30-11:30,13:00-17:00"
    cutoff: str = "15:00"
    # Encryption of the whole event store at rest (eventsourcing AESCipher); empty = off.
    cipher_key: str = ""
    # Secret for rating tokens; empty = a random one kept in var/secret.key.
    secret_key: str = ""
    # Statistics for groups smaller than this are not published.
    min_group_size: int = 5
    # Statistics (scoreboard, late lists, satisfaction) are recomputed at most this often while
    # other processes write; writes made by this process refresh them at once.
    stats_refresh_seconds: float = 60.0
    # Projection runner.
    projection_batch_size: int = 1000
    projection_poll_interval: float = 0.5
    extra: Mapping[str, str] = field(default_factory=dict)
    # Exchange with the National Public Service Portal (outbox sender, `portal sync`).
    national_url: str = ""  # endpoint receiving DongBoHoSoMC / CapNhatTienDoHoSoMC; empty = off
    national_token: str = ""  # sent as "Authorization: Bearer <token>"; never printed
    national_timeout: float = 10.0  # seconds per request
    national_backoff: float = 2.0  # first retry delay in seconds; doubles per failed attempt
    national_backoff_max: float = 300.0  # longest delay between two attempts of one message
    # Transparency log: checkpoints signed per batch of feed records, or after max_wait seconds.
    transparency_batch: int = 100
    transparency_max_wait: float = 3600.0

    @property
    def backend(self) -> str:
        return "postgres" if self.postgres_url else "sqlite"

    @property
    def events_db_path(self) -> Path:
        return self.var_dir / "events.sqlite"

    @property
    def read_db_path(self) -> Path:
        return self.var_dir / "read.sqlite"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)

    def eventsourcing_env(self) -> dict[str, str]:
        """The environment the eventsourcing Application is built with."""
        if self.backend == "postgres":
            url = urlparse(self.postgres_url)
            env = {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
                "POSTGRES_HOST": url.hostname or "127.0.0.1",
                "POSTGRES_PORT": str(url.port or 5432),
                "POSTGRES_USER": url.username or "postgres",
                "POSTGRES_PASSWORD": url.password or "",
                "POSTGRES_SCHEMA": self.postgres_schema,
                "POSTGRES_POOL_SIZE": "5",
                "POSTGRES_MAX_OVERFLOW": "10",
                # No pre-ping: after a server restart the pool would check its broken idle
                # connections one by one with growing pauses (a 30 s stall); without it a
                # broken connection fails its statement and the library retries the call
                # (10 attempts, 0.2 s apart) on a fresh one.
                "POSTGRES_PRE_PING": "n",
                # A server that does not answer fails a connection in 5 s, not the driver's
                # 30 s (times the library's 10 attempts: /healthz hung for minutes).
                "POSTGRES_CONNECT_TIMEOUT": "5",
            }
        else:
            env = {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.events_db_path),
                "SQLITE_LOCK_TIMEOUT": "10",
            }
        if self.cipher_key:
            env["CIPHER_TOPIC"] = "eventsourcing.cryptography:AESCipher"
            env["CIPHER_KEY"] = self.cipher_key
            env["COMPRESSOR_TOPIC"] = "eventsourcing.compressor:ZlibCompressor"
        return env


# name of the PORTAL_* variable -> (field, parser, explanation); the README table is built from this.
def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {value!r}") from None


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {value!r}") from None


def _port(name: str, value: str) -> int:
    port = _int(name, value)
    if not 1 <= port <= 65535:
        raise SettingsError(f"{name} must be a port number from 1 to 65535, got {value!r}")
    return port


VARIABLES: dict[str, tuple[str, str]] = {
    "PORTAL_VAR_DIR": ("var_dir", "folder for SQLite files, keys and Meilisearch data (default ./var)"),
    "PORTAL_POSTGRES_URL": ("postgres_url", "PostgreSQL URL for events and read models; empty = SQLite"),
    "PORTAL_POSTGRES_SCHEMA": ("postgres_schema", "PostgreSQL schema (default public)"),
    "PORTAL_PUBLIC_BASE_URL": ("public_base_url", "public address encoded in QR codes and feeds"),
    "PORTAL_HOST": ("host", "address the web server binds (default 127.0.0.1)"),
    "PORTAL_PORT": ("port", "port the web server binds (default 8000)"),
    "PORTAL_MEILI_URL": ("meili_url", "external Meilisearch URL; empty = `portal demo` manages one"),
    "PORTAL_MEILI_KEY": ("meili_key", "Meilisearch API key (master key for the managed one)"),
    "PORTAL_MEILI_INDEX": ("meili_index", "name of the procedure index (default procedures)"),
    "PORTAL_PROVINCE_CODE": ("province_code", "province part of QCVN 102 unit codes (unconfirmed)"),
    "PORTAL_PROVINCE_NAME": ("province_name", "province name shown on pages"),
    "PORTAL_OFFICE_HOURS": ("office_hours", "office periods, e.g. 07:30-11:30,13:00-17:00"),
    "PORTAL_CUTOFF": ("cutoff", "afternoon cut-off for next-day receipt (default 15:00)"),
    "PORTAL_CIPHER_KEY": ("cipher_key", "base64 AES key: encrypts the whole event store at rest"),
    "PORTAL_SECRET_KEY": ("secret_key", "secret for citizens' rating tokens (default: var/secret.key)"),
    "PORTAL_MIN_GROUP_SIZE": ("min_group_size", "smallest group published as a statistic (5)"),
    "PORTAL_STATS_REFRESH_SECONDS": ("stats_refresh_seconds",
                                     "longest age of shown statistics while workers write (10)"),
    "PORTAL_PROJECTION_BATCH_SIZE": ("projection_batch_size", "events per projection transaction"),
    "PORTAL_PROJECTION_POLL_INTERVAL": ("projection_poll_interval", "seconds between polls"),
    "PORTAL_NATIONAL_URL": ("national_url", "national portal endpoint for dossier sync; empty = off"),
    "PORTAL_NATIONAL_TOKEN": ("national_token", "access token for the national portal (Bearer)"),
    "PORTAL_NATIONAL_TIMEOUT": ("national_timeout", "seconds per request to the national portal (10)"),
    "PORTAL_NATIONAL_BACKOFF": ("national_backoff", "first retry delay in seconds, doubling (2)"),
    "PORTAL_NATIONAL_BACKOFF_MAX": ("national_backoff_max", "longest retry delay in seconds (300)"),
    "PORTAL_TRANSPARENCY_BATCH": ("transparency_batch", "feed records per signed checkpoint (100)"),
    "PORTAL_TRANSPARENCY_MAX_WAIT": ("transparency_max_wait",
                                     "seconds before leftover records get a checkpoint (3600)"),
}

_PARSERS = {
    "var_dir": lambda n, v: Path(v),
    "port": _port,
    "min_group_size": _int,
    "stats_refresh_seconds": _float,
    "projection_batch_size": _int,
    "projection_poll_interval": _float,
    "national_timeout": _float,
    "national_backoff": _float,
    "national_backoff_max": _float,
    "transparency_batch": _int,
    "transparency_max_wait": _float,
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from PORTAL_* variables (os.environ by default) plus explicit overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for var, (name, _help) in VARIABLES.items():
        raw = environ.get(var)
        if raw is None or raw == "":
            continue
        parser = _PARSERS.get(name)
        values[name] = parser(var, raw) if parser else raw
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.public_base_url.endswith("/"):
        settings = settings.with_(public_base_url=settings.public_base_url.rstrip("/"))
    if settings.projection_batch_size < 1:
        raise SettingsError("PORTAL_PROJECTION_BATCH_SIZE must be at least 1")
    if settings.stats_refresh_seconds < 0:
        raise SettingsError("PORTAL_STATS_REFRESH_SECONDS must not be negative")
    # Values an operator audit found taken silently: a negative poll interval (a busy loop),
    # a batch or wait of 0 (replaced by the default), a negative group size or timeout.
    for var, value, low in (
            ("PORTAL_PROJECTION_POLL_INTERVAL", settings.projection_poll_interval, 0.01),
            ("PORTAL_TRANSPARENCY_BATCH", settings.transparency_batch, 1),
            ("PORTAL_TRANSPARENCY_MAX_WAIT", settings.transparency_max_wait, 1),
            ("PORTAL_MIN_GROUP_SIZE", settings.min_group_size, 1),
            ("PORTAL_NATIONAL_TIMEOUT", settings.national_timeout, 0.1)):
        if not value >= low:  # (NaN too)
            raise SettingsError(f"{var} must be at least {low}, not {value}")
    for var, url in (("PORTAL_PUBLIC_BASE_URL", settings.public_base_url),
                     ("PORTAL_MEILI_URL", settings.meili_url)):
        if url and not url.startswith(("http://", "https://")):
            raise SettingsError(f"{var} must be an http:// or https:// address (a QR code or"
                                f" a request needs one), not {url!r}")
    if settings.postgres_url and not SCHEMA_NAME.match(settings.postgres_schema):
        raise SettingsError("PORTAL_POSTGRES_SCHEMA must be a plain name (letters, digits and _,"
                            f" not starting with a digit), not {settings.postgres_schema!r}")
    if PLACEHOLDER_SECRET in settings.secret_key:
        raise SettingsError("PORTAL_SECRET_KEY is still the example's placeholder: set a long"
                            " random value (e.g. `openssl rand -hex 32`); anyone could otherwise"
                            " compute citizens' rating tokens")
    _check_office_hours(settings)
    return settings


SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,50}\Z")
# The placeholder of deploy/portal.env.example, refused as a secret.
PLACEHOLDER_SECRET = "change-me"  # noqa: S105 (refused, not used)


def _check_office_hours(settings: Settings) -> None:
    """Office hours and cut-off are parsed where the calendar is built; a typing error in them is
    reported here, naming the variable, not later as a failure inside the calendar."""
    from domain.calendar import OfficeHours

    try:
        OfficeHours.parse(settings.office_hours, "15:00")
    except ValueError as e:
        raise SettingsError(f"PORTAL_OFFICE_HOURS: {e}") from None
    try:
        OfficeHours.parse("07:30-11:30", settings.cutoff)
    except ValueError as e:
        raise SettingsError(f"PORTAL_CUTOFF: {e}") from None
