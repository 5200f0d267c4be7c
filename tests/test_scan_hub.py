"""`clip-audit scan owner/name[@revision]` against the Hub emulator, through the real huggingface_hub client:
the revision resolved to a commit and everything pinned to it, the token taken from HF_TOKEN, the weights parsed
in the token-free scanning child, and the exit codes a local folder would give."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from cli_run import run_cli
from hub_fixtures import CLIP_CONFIG, OWNER_TOKEN, clip_repo_files
from sarif_check import check_sarif

from bot.cli.sarif import BACKDOOR
from bot.errors import EXIT_BACKDOOR, EXIT_CLEAN, EXIT_ERROR, EXIT_NOTHING_SCANNABLE, EXIT_USAGE
from bot.zoo.catalog import model_files

# The real scanning child with only the scan replaced (tests/scan_children.py): it answers a clean record at
# once, or for "*/dial-PORT" tries to connect to that port.
MISBEHAVING_CHILD = [sys.executable, str(Path(__file__).with_name("scan_children.py"))]


@pytest.fixture
def cli_env(hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The settings a user would give in the environment, and an empty working folder."""
    for name, value in {"CLIP_AUDIT_ENDPOINT": hub.url, "CLIP_AUDIT_DB_PATH": str(tmp_path / "state" / "state.db"),
                        "CLIP_AUDIT_CACHE_DIR": str(tmp_path / "hub-cache"), "CLIP_AUDIT_DEVICE": "cpu",
                        "HF_HOME": str(tmp_path / "hf-home")}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "CLIP_AUDIT_TOKEN", "CLIP_AUDIT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def quick_child(monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.scanning.isolation

    monkeypatch.setattr(bot.scanning.isolation, "child_command", lambda: list(MISBEHAVING_CHILD))


def _scan(capsys, *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, "scan", *argv, "-q")


def test_a_hub_repo_is_scanned_pinned_to_the_commit_its_revision_names(hub, cli_env, quick_child, capsys,
                                                                       monkeypatch) -> None:
    sha1 = hub.state.create_repo("acme/clip-tiny", files=clip_repo_files(cli_env), private=True)
    sha2 = hub.state.push_revision("acme/clip-tiny", files={"notes.txt": b"a second commit"})

    code, out, err = _scan(capsys, "acme/clip-tiny")
    assert code == EXIT_USAGE and out == ""
    assert "acme/clip-tiny" in err and "HF_TOKEN" in err and "Traceback" not in err

    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)  # the usual place; never passed to the scanning child
    for target, sha in (("acme/clip-tiny", sha2), ("acme/clip-tiny@main", sha2), (f"acme/clip-tiny@{sha1}", sha1)):
        code, out, err = _scan(capsys, target, "--format", "json")
        assert code == EXIT_CLEAN, err
        record = json.loads(out)
        assert (record["model"], record["revision"], record["verdict"]) == ("acme/clip-tiny", sha, "clean")
    snapshots = {path.name for path in (cli_env / "hub-cache").glob("models--acme--clip-tiny/snapshots/*")}
    assert snapshots == {sha1, sha2}  # downloaded by commit, never by branch
    assert not list((cli_env / "hub-cache").rglob("pytorch_model.bin"))


def test_the_weights_are_parsed_in_the_child_that_cannot_reach_the_network(hub, cli_env, quick_child,
                                                                          capsys) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        repo_id = f"acme/dial-{listener.getsockname()[1]}"
        hub.state.create_repo(repo_id, files=clip_repo_files(cli_env))
        code, out, err = _scan(capsys, repo_id)
    assert code == EXIT_ERROR and out == ""
    assert "may not use the network" in err and "Traceback" not in err


def test_what_cannot_be_scanned_exits_as_a_local_folder_would(hub, cli_env, quick_child, capsys) -> None:
    hub.state.create_repo("acme/clip-tiny", files=clip_repo_files(cli_env))
    hub.state.create_repo("acme/pickles", files={"config.json": CLIP_CONFIG, "pytorch_model.bin": b"never read"})

    for target in ("acme/no-such-repo", "acme/clip-tiny@no-such-branch", "acme/clip-tiny@" + "0" * 40):
        code, out, err = _scan(capsys, target)
        assert code == EXIT_USAGE and out == "", target
        assert target.split("@")[0] in err and "Traceback" not in err
    code, _, err = _scan(capsys, "acme/pickles")
    assert code == EXIT_NOTHING_SCANNABLE and "pickle" in err.lower()
    code, _, err = _scan(capsys, "acme/clip-tiny", "--anchor", str(cli_env))
    assert code == EXIT_USAGE and "--anchor is for local folders" in err
    code, _, err = _scan(capsys, "not a repo id")
    assert code == EXIT_USAGE and "does not exist" in err
    # Registering a base that is not there is the same mistake.
    code, _, err = run_cli(capsys, "anchors", "add", "acme/no-such-repo")
    assert code == EXIT_USAGE and "acme/no-such-repo" in err


def test_a_backdoored_hub_repo_is_found_and_reported_as_sarif(hub, cli_env, clip_zoo, capsys) -> None:
    # The registry's zoo base (bot/anchors/registry.json) is on this Hub, so the weights can choose it.
    hub.state.create_repo("clip-audit-zoo/clip-base-s0", files=model_files(clip_zoo["base"].path))
    sha = hub.state.create_repo("mallory/rickroll", files=model_files(clip_zoo["text-on-text"].path))

    code, out, err = _scan(capsys, "mallory/rickroll", "--format", "sarif")

    assert code == EXIT_BACKDOOR, err
    (result,) = check_sarif(json.loads(out))
    assert (result["ruleId"], result["level"]) == (BACKDOOR.id, "error")
    assert result["properties"]["revision"] == sha and result["properties"]["anchor"] == "clip-audit-zoo/clip-base-s0"
    location = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert location == f"{hub.url}/mallory/rickroll/tree/{sha}"
