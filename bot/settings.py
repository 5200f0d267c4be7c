"""One frozen Settings object, built from defaults < TOML file < CLIP_AUDIT_* environment < CLI flags.

Every default is documented where it is defined (the `Settings` fields below). The TOML file is flat:
its keys are the field names (`poll_interval_seconds = 600`). Environment variables are the field names
upper-cased with a `CLIP_AUDIT_` prefix (`CLIP_AUDIT_DRY_RUN=1`).

The Hub's own variables are honoured below the project's: HF_ENDPOINT replaces the built-in endpoint
default (the TOML file and CLIP_AUDIT_ENDPOINT still win over it), and the token comes from the CLI,
then CLIP_AUDIT_TOKEN, then HF_TOKEN, then huggingface_hub's stored login. A token is never read from
the TOML file (files get committed and shared) and never shown in repr().
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from bot.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("clip-audit.toml")
# Everything the bot writes locally lives under here unless a setting says otherwise (git-ignored).
CACHE_ROOT = Path("cache")
ENV_PREFIX = "CLIP_AUDIT_"
GIB = 1024**3

# Never accepted from the TOML file: see the module docstring.
_FILE_FORBIDDEN = frozenset({"token"})


@dataclass(frozen=True)
class Settings:
    # Hub to talk to; HF_ENDPOINT replaces this default.
    endpoint: str = "https://huggingface.co"
    # Write token for posting; None runs read-only (with dry_run, nothing is posted anyway).
    token: str | None = field(default=None, repr=False)
    # The bot's Hub user name: mentions are "@<bot_name>", and its own comments are never answered.
    bot_name: str = "clip-audit-bot"
    # SQLite state: repos seen, job queue, scans, posts, opt-outs.
    db_path: Path = CACHE_ROOT / "state.db"
    # huggingface_hub download cache for the files we scan (evicted down to cache_max_bytes).
    cache_dir: Path = CACHE_ROOT / "hub"
    # Where locally held clean bases live (the zoo's <anchor_cache>/zoo/<hash>/): anchors for local scans.
    anchor_cache: Path = CACHE_ROOT
    # The operator's own trusted bases, added to the shipped registry (`clip-audit anchors add` writes it).
    anchors_file: Path = Path("clip-audit-anchors.json")
    # Where dry-run posts are written as Markdown instead of going to the Hub.
    outbox_dir: Path = CACHE_ROOT / "outbox"
    # True: never write to the Hub (no discussions, comments or PRs); write to outbox_dir instead.
    dry_run: bool = False
    # Repos whose scannable files (config, safetensors, tokenizer) total more are skipped as "oversized".
    max_download_bytes: int = 2 * GIB
    # After each job, least-recently-used snapshots are evicted until the cache holds at most this much.
    cache_max_bytes: int = 20 * GIB
    # A Hub call that gets no answer (or whose answer stops arriving) for this long fails as a network failure,
    # retried like any outage; huggingface_hub's own client would wait forever on a stalled connection.
    hub_timeout_seconds: float = 60.0
    # Seconds between two Hub listing polls; 5 minutes matches the Hub's quota window (1,000 calls / 5 min).
    poll_interval_seconds: float = 300.0
    # `watch` also re-reads the open discussions of the repos the bot has posted in this often, answering
    # any mention a lost webhook delivery missed (each thread read is one Hub call: keep it well apart).
    mention_poll_seconds: float = 900.0
    # First poll with no cursor: look at this many newest repos per listing, not the Hub's whole history.
    initial_backfill: int = 50
    # A job's lease: a worker that stops heartbeating for this long loses its job to another worker. Also a
    # mention's: one whose processor died (`serve` killed while answering) is taken again after this long.
    lease_seconds: float = 600.0
    # Total tries for one job before it is failed for good.
    max_attempts: int = 4
    # Wait before retry N (1-based) is backoff_seconds[N-1]; the last value repeats.
    backoff_seconds: tuple[float, ...] = (60.0, 600.0, 3600.0)
    # Seconds an idle worker waits before asking the queue again (also how often `watch` looks for mention
    # events that are due: stored by the webhook, or waiting for a retry).
    worker_idle_seconds: float = 5.0
    # Tries for one mention (reading the comment, answering it) before it is failed for good; transient Hub
    # errors (5xx, 429, a network failure) retry after mention_backoff_seconds[N-1] (the last value repeats;
    # at least Retry-After for rate limits). Shorter than a job's: a person is waiting for the answer.
    mention_max_attempts: int = 6
    mention_backoff_seconds: tuple[float, ...] = (10.0, 60.0, 300.0, 900.0)
    # Torch device for the detector: auto | cpu | cuda | cuda:N.
    device: str = "auto"
    # True: the worker keeps one token-free scanning child between jobs (imports and the bases scanned
    # against stay loaded); False: a fresh child per scan.
    resident_scanner: bool = True
    # Wall-clock limit of one scan in the scanning child; past it the child (its whole process group) is
    # killed and the job's attempt fails "timed out". A ViT-L/14 text tower takes ~25 min on one CPU core and
    # seconds on a GPU (docs/performance.md); a SigLIP-so400m scan on a CPU can take longer: raise it there.
    scan_timeout_seconds: float = 4 * 3600.0
    # Address space the scanning child may use on the CPU (RLIMIT_AS), so that weights or a config claiming
    # huge sizes end the attempt as "out of memory" instead of exhausting the machine; 0: no limit. A tiny-zoo
    # scan peaks near 1 GB resident, a ViT-L/14 one near 2.8 GB and SigLIP-so400m near 9.5 GB, on top of
    # ~3.3 GB of address space that torch and transformers map when imported.
    scan_memory_bytes: int = 24 * GIB
    # False: post unprompted only when something is found; clean results are given on request (mention).
    post_clean_results: bool = False
    # Base URL of the published report pages, for links in posts; None: posts carry no report link.
    report_base_url: str | None = None
    # Shared secret the Hub sends in X-Webhook-Secret; None disables the webhook server.
    webhook_secret: str | None = field(default=None, repr=False)
    # Webhook server bind address; loopback by default (put a reverse proxy in front for the Hub).
    webhook_host: str = "127.0.0.1"
    # Webhook server port (`serve`; the Dockerfile EXPOSEs it).
    webhook_port: int = 8080
    # Where jobs go: "sqlite", the state database's queue and the built-in worker (one machine, no server);
    # "celery", a Redis broker at redis_url that `clip-audit worker --backend celery` processes consume (one
    # per GPU). Either way results and posts are written to the state database (db_path).
    queue_backend: str = "sqlite"
    # The Celery broker (queue_backend "celery"): redis://[:password@]host:port/db. Hidden like a secret:
    # it may carry a password.
    redis_url: str = field(default="redis://localhost:6379/0", repr=False)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def broker_visibility_seconds(self) -> float:
        """How long the broker waits for a delivered scan task to be acknowledged before it hands the task to
        another worker (its worker died): above the longest scan (scan_timeout_seconds), plus one lease for the
        download before it and the post after it. Shorter would hand a task that is still running to a second
        worker (which then waits for the first one's lease); longer only delays the rescue of a dead one's."""
        return self.scan_timeout_seconds + self.lease_seconds

    @property
    def calibrations_dir(self) -> Path:
        """Calibrations of registered bases (`clip-audit calibrate`, bot/anchors/calibrations.py): state, kept
        beside the state database."""
        return self.db_path.parent / "calibrations"


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}


def load_settings(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] = os.environ,
    overrides: Mapping[str, object] = {},  # noqa: B006 - never mutated
    stored_token: Callable[[], str | None] | None = None,
) -> Settings:
    """Builds Settings from defaults < TOML < environment < `overrides` (CLI flags; None values are ignored).

    Args:
        config_file: an explicit TOML file (must exist); None reads CLIP_AUDIT_CONFIG or ./clip-audit.toml
            when present.
        env: the environment to read CLIP_AUDIT_*, HF_ENDPOINT and HF_TOKEN from.
        overrides: field name -> value, typically parsed CLI flags.
        stored_token: returns huggingface_hub's stored login token; defaults to `huggingface_hub.get_token`.
    Raises:
        ConfigError: an unreadable file, an unknown key, or an invalid value.
    """
    values: dict[str, Any] = {}
    if env.get("HF_ENDPOINT"):
        values["endpoint"] = _convert("endpoint", env["HF_ENDPOINT"], source="HF_ENDPOINT")

    path = _config_path(config_file, env)
    if path is not None:
        values.update(_read_file(path))

    for name in FIELDS:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _convert(name, raw, source=ENV_PREFIX + name.upper())

    for name, value in overrides.items():
        if name not in FIELDS:
            raise ConfigError(f"unknown setting {name!r}; known settings: {', '.join(FIELDS)}")
        if value is not None:
            values[name] = _convert(name, value, source=f"option --{name.replace('_', '-')}")

    if values.get("token") is None:
        values["token"] = env.get("HF_TOKEN") or _stored_login(stored_token)
    return Settings(**values)


def _stored_login(stored_token: Callable[[], str | None] | None) -> str | None:
    if stored_token is None:
        from huggingface_hub import get_token

        stored_token = get_token
    return stored_token()


def _config_path(config_file: Path | None, env: Mapping[str, str]) -> Path | None:
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        return config_file
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in _FILE_FORBIDDEN:
            raise ConfigError(f"{path}: do not put the token in a config file; set HF_TOKEN or run `hf auth login`")
        if name not in FIELDS:
            raise ConfigError(f"{path}: unknown setting {name!r}; known settings: {', '.join(FIELDS)}")
        values[name] = _convert(name, value, source=str(path))
    return values


# -- conversion: strings from the environment / CLI, native values from TOML ----------------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}  # fmt: skip
_BYTE_FIELDS = frozenset({"max_download_bytes", "cache_max_bytes", "scan_memory_bytes"})


def _convert(name: str, value: object, *, source: str) -> Any:
    kind = FIELDS[name].type
    try:
        return _convert_to(kind, name, value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: invalid value {_shown(name, value)} for {name}: {exc}") from None


def _shown(name: str, value: object) -> str:
    return "(hidden)" if name in ("token", "webhook_secret", "redis_url") else repr(value)


def _convert_to(kind: object, name: str, value: object) -> Any:
    optional = isinstance(kind, str) and kind.endswith("| None")
    if value is None:
        if optional:
            return None
        raise ValueError("a value is required")
    base = kind.split("|")[0].strip() if isinstance(kind, str) else kind
    if base == "bool":
        return _to_bool(value)
    if base == "int":
        return _to_size(value) if name in _BYTE_FIELDS else _to_int(value)
    if base == "float":
        return _to_float(value)
    if base == "tuple[float, ...]":
        return _to_float_tuple(value)
    if base == "Path":
        if not isinstance(value, (str, Path)) or str(value) == "":
            raise ValueError("expected a path")
        return Path(value)
    if base == "str":
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return None if optional and value == "" else value
    raise TypeError(f"unsupported setting type {kind!r}")  # pragma: no cover - a new field without a converter


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("expected true/false (or 1/0, yes/no, on/off)")


def _to_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("expected an integer")
    return int(value)


def _to_size(value: object) -> int:
    """Bytes as an integer or with a unit: 2GiB, 500MB, 1.5G (decimal k/m/g/t, binary ki/mi/gi/ti)."""
    if isinstance(value, bool):
        raise ValueError("expected a size in bytes")
    if isinstance(value, int):
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("expected a size such as 2147483648, 2GiB or 500MB")
    unit = (match.group(2) or "").lower().removesuffix("b")
    return int(float(match.group(1)) * _UNITS[unit])


def _to_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("expected a number")
    return float(value)


def _to_float_tuple(value: object) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError("expected a list of seconds such as 60,600,3600")
    return tuple(_to_float(item.strip() if isinstance(item, str) else item) for item in items)


# -- validation --------------------------------------------------------------------------------------------

QUEUE_BACKENDS = ("sqlite", "celery")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_HUB_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _validate(settings: Settings) -> None:
    problems: list[str] = []
    if not re.match(r"^https?://[^\s/]+", settings.endpoint):
        problems.append(f"endpoint {settings.endpoint!r} must be an http(s) URL")
    if settings.report_base_url is not None and not re.match(r"^https?://\S+$", settings.report_base_url):
        problems.append(f"report_base_url {settings.report_base_url!r} must be an http(s) URL")
    if not _HUB_USER.match(settings.bot_name):
        problems.append(f"bot_name {settings.bot_name!r} is not a Hub user name")
    for name in ("max_download_bytes", "cache_max_bytes", "max_attempts", "mention_max_attempts", "initial_backfill",
                 "scan_memory_bytes"):
        if getattr(settings, name) < (0 if name in ("initial_backfill", "scan_memory_bytes") else 1):
            problems.append(f"{name} must be positive, got {getattr(settings, name)}")
    for name in ("poll_interval_seconds", "mention_poll_seconds", "lease_seconds", "worker_idle_seconds",
                 "scan_timeout_seconds", "hub_timeout_seconds"):
        if not getattr(settings, name) > 0:
            problems.append(f"{name} must be more than 0 seconds, got {getattr(settings, name)}")
    for name in ("backoff_seconds", "mention_backoff_seconds"):
        delays = getattr(settings, name)
        if not delays or any(not delay >= 0 for delay in delays):
            problems.append(f"{name} must be one or more delays >= 0, got {delays}")
    if not _DEVICE.match(settings.device):
        problems.append(f"device {settings.device!r} must be auto, cpu, cuda or cuda:N")
    if not 0 <= settings.webhook_port <= 65535:
        problems.append(f"webhook_port {settings.webhook_port} is not a TCP port (0-65535)")
    if settings.queue_backend not in QUEUE_BACKENDS:
        problems.append(f"queue_backend {settings.queue_backend!r} must be one of {', '.join(QUEUE_BACKENDS)}")
    if not re.match(r"^(rediss?|unix)://\S+$", settings.redis_url):
        problems.append("redis_url must be a redis://, rediss:// or unix:// URL")  # not shown: it may hold a password
    if problems:
        raise ConfigError("invalid settings: " + "; ".join(problems))
