"""The Dockerfile, checked without Docker (not available here; docs/deployment.md has the manual `docker build`):
everything it copies exists, what it runs is a real command, one CUDA runtime, the wheel instead of an editable
install, serve's port exposed, docker-compose.yml's commands real ones; and the HEALTHCHECK's probe
(bot/healthcheck.py) against a real HTTP server."""

from __future__ import annotations

import http.server
import json
import re
import shlex
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
import yaml

from bot.cli import build_parser
from bot.healthcheck import probe
from bot.settings import FIELDS, Settings

REPO = Path(__file__).resolve().parents[1]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, its arguments) for every instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _exec_form(arguments: str) -> list[str]:
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def _of(keyword: str) -> list[str]:
    return [arguments for name, arguments in _instructions() if name == keyword]


def test_everything_the_dockerfile_copies_exists() -> None:
    copies = [shlex.split(arguments) for arguments in _of("COPY")]
    from_context = [parts for parts in copies if not any(part.startswith("--from") for part in parts)]
    assert from_context
    for *sources, _destination in from_context:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    # what the wheel is built from: the same files the wheel test builds it from
    copied = {source for *sources, _ in from_context for source in sources}
    assert {"pyproject.toml", "setup.py", "README.md", "bot", "hub_emulator", "templates"} <= copied


def test_one_python_base_and_the_wheel_installed() -> None:
    bases = [arguments.split()[0] for arguments in _of("FROM")]
    assert bases and all(base.startswith("python:") for base in bases)  # torch's wheels bring CUDA; no CUDA base
    runs = " ".join(_of("RUN"))
    assert "pip install -e" not in runs and "--editable" not in runs
    assert "pip wheel" in runs and re.search(r"pip install \S*\.whl", runs)


def test_the_image_runs_real_commands_and_exposes_serves_port() -> None:
    (entrypoint,) = _of("ENTRYPOINT")
    assert _exec_form(entrypoint) == ["clip-audit"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["clip-audit"] == "bot.cli:main"
    (command,) = _of("CMD")
    with pytest.raises(SystemExit) as shown:
        build_parser().parse_args(_exec_form(command))  # --help: prints and exits 0
    assert shown.value.code == 0
    assert _of("EXPOSE") == [str(Settings.webhook_port)]
    (health,) = _of("HEALTHCHECK")
    assert _exec_form(health.split("CMD", 1)[1].strip()) == ["python", "-m", "bot.healthcheck"]
    for arguments in _of("ENV"):
        for name in re.findall(r"\bCLIP_AUDIT_(\w+)=", arguments):
            assert name.lower() in FIELDS, f"ENV CLIP_AUDIT_{name} is not a setting"
    assert "CLIP_AUDIT_WEBHOOK_HOST=0.0.0.0" in " ".join(_of("ENV"))  # reachable from outside the container
    assert _of("USER") == ["audit"] and _of("WORKDIR")[-1] == "/data"


def test_every_command_docker_compose_runs_in_the_image_is_one_the_cli_takes() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    commands = [service["command"] for service in compose["services"].values()
                if "command" in service and service.get("image", "clip-audit-bot:latest").startswith("clip-audit")]
    assert commands
    for command in commands:
        args = build_parser().parse_args(command if isinstance(command, list) else shlex.split(command))
        assert callable(args.func), command


def test_the_deployment_guide_gives_the_build_command() -> None:
    guide = (REPO / "docs" / "deployment.md").read_text()
    assert "docker build -t clip-audit-bot ." in guide


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_health_probe_asks_serve_and_only_serve(health_server: int, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    serve = ["/opt/venv/bin/python", "/opt/venv/bin/clip-audit", "serve"]
    assert probe([*serve, "--port", str(health_server)])[0] is True
    assert probe([*serve, f"--port={health_server}"])[0] is True
    monkeypatch.setenv("CLIP_AUDIT_WEBHOOK_PORT", str(health_server))  # the setting, when no flag is given
    assert probe(serve)[0] is True
    with socket.socket() as bound:  # a port of ours that nothing listens on
        bound.bind(("127.0.0.1", 0))
        healthy, why = probe([*serve, "--port", str(bound.getsockname()[1])])
    assert healthy is False and "/health" in why
    # watch and the workers answer no HTTP; `site serve` is a local preview
    for other in (["clip-audit", "watch"], ["/sbin/docker-init", "--", "clip-audit", "worker", "--once"],
                  ["clip-audit", "site", "serve"]):
        assert probe(other) == (True, "not a serve container: nothing to ask")
