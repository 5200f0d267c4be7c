"""docker-compose.yml, checked without Docker: it parses, every bot service runs a `clip-audit` command line the CLI
accepts, with settings the bot accepts (the Celery backend), and the token comes from a secret file, never from the
image or the compose file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.cli import build_parser
from bot.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def _services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]


def _bot_services() -> dict[str, dict]:
    return {name: spec for name, spec in _services().items() if spec.get("build") == "."}


def _environment(spec: dict) -> dict[str, str]:
    """The service's environment as Compose would pass it, `${VAR:-default}` taken at its default (a value for
    the `${VAR:?}` ones a user must set)."""
    values = {name: str(value) for name, value in (spec.get("environment") or {}).items()}
    return {name: _INTERPOLATION.sub(lambda m: m.group(2) if "-" in m.group(0) else "set-by-the-user", value)
            for name, value in values.items()}  # fmt: skip


def test_compose_runs_redis_watch_serve_and_one_celery_worker_per_gpu() -> None:
    services = _services()
    assert "redis" in services and services["redis"]["healthcheck"]
    bots = _bot_services()
    commands = {name: spec["command"][0] for name, spec in bots.items()}
    assert commands["watch"] == "watch" and commands["serve"] == "serve"
    workers = {name: spec for name, spec in bots.items() if commands[name] == "worker"}
    assert len(workers) >= 1
    gpus = []
    for spec in workers.values():
        command = spec["command"]
        assert command[command.index("--backend") + 1] == "celery"
        assert command[command.index("--concurrency") + 1] == "1"
        (device,) = spec["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and len(device["device_ids"]) == 1
        gpus += device["device_ids"]
    assert len(gpus) == len(set(gpus))  # one worker per GPU
    names = [spec["command"][spec["command"].index("--name") + 1] for spec in workers.values()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("service", sorted(_bot_services()))
def test_each_bot_service_runs_a_command_line_and_settings_the_bot_accepts(service: str) -> None:
    spec = _bot_services()[service]
    args = build_parser().parse_args(spec["command"])  # a usage error raises SystemExit
    assert callable(args.func)
    assert spec["volumes"] == ["state:/data"]
    env = _environment(spec)
    assert not any("TOKEN" in name and name != "HF_TOKEN_PATH" for name in env)  # the token is a secret file
    assert env["HF_TOKEN_PATH"] == "/run/secrets/hf_token" and spec["secrets"] == ["hf_token"]
    settings = load_settings(config_file=None, env=env, stored_token=lambda: None)
    assert settings.queue_backend == "celery" and settings.redis_url == "redis://redis:6379/0"
    assert settings.broker_visibility_seconds > settings.scan_timeout_seconds


def test_the_token_file_is_ignored_by_git_and_never_copied_into_the_image() -> None:
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "/hf_token" in ignored and "/.env" in ignored
    copied = [line.split()[1:-1] for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("COPY")]
    assert not any("hf_token" in path or path == "." for paths in copied for path in paths)
