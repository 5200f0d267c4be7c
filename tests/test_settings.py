"""Settings: defaults < TOML < CLIP_AUDIT_* env < CLI overrides; validation; secrets hidden."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import tomllib

from bot.errors import ConfigError
from bot.settings import GIB, Settings, load_settings


def _load(*, config_file: Path | None = None, env: dict[str, str] | None = None,
          overrides: dict[str, object] | None = None, stored: str | None = None) -> Settings:  # fmt: skip
    return load_settings(config_file=config_file, env=env or {}, overrides=overrides or {}, stored_token=lambda: stored)


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ./clip-audit.toml is read when present: run each test where there is none unless it writes one.
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = _load()
    assert settings.endpoint == "https://huggingface.co"
    assert settings.token is None
    assert settings.db_path == Path("cache/state.db") and settings.cache_dir == Path("cache/hub")
    assert settings.max_download_bytes == 2 * GIB
    assert settings.post_clean_results is False and settings.dry_run is False
    assert settings.backoff_seconds == (60.0, 600.0, 3600.0)


def test_precedence_file_then_env_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "custom.toml"
    config.write_text('endpoint = "http://file.example"\npoll_interval_seconds = 600\nmax_attempts = 2\n'
                      'dry_run = true\nbackoff_seconds = [1, 2]\n')  # fmt: skip
    env = {"HF_ENDPOINT": "http://hf-env.example", "CLIP_AUDIT_POLL_INTERVAL_SECONDS": "900",
           "CLIP_AUDIT_MAX_ATTEMPTS": "3"}  # fmt: skip
    settings = _load(config_file=config, env=env, overrides={"max_attempts": 7, "device": None})
    assert settings.endpoint == "http://file.example"  # the project's file wins over the ecosystem's HF_ENDPOINT
    assert settings.poll_interval_seconds == 900.0  # env over file
    assert settings.max_attempts == 7  # CLI over env
    assert settings.device == "auto"  # None overrides are "flag not given"
    assert settings.dry_run is True and settings.backoff_seconds == (1.0, 2.0)


def test_hf_endpoint_replaces_the_default_and_clip_audit_env_wins() -> None:
    assert _load(env={"HF_ENDPOINT": "http://127.0.0.1:9"}).endpoint == "http://127.0.0.1:9"
    both = {"HF_ENDPOINT": "http://127.0.0.1:9", "CLIP_AUDIT_ENDPOINT": "http://127.0.0.1:10"}
    assert _load(env=both).endpoint == "http://127.0.0.1:10"


def test_default_file_and_config_env_are_read(tmp_path: Path) -> None:
    (tmp_path / "clip-audit.toml").write_text('bot_name = "from-default-file"\n')
    assert _load().bot_name == "from-default-file"
    other = tmp_path / "other.toml"
    other.write_text('bot_name = "from-env-path"\n')
    assert _load(env={"CLIP_AUDIT_CONFIG": str(other)}).bot_name == "from-env-path"


def test_env_strings_are_converted() -> None:
    env = {"CLIP_AUDIT_DRY_RUN": "yes", "CLIP_AUDIT_MAX_DOWNLOAD_BYTES": "500MiB", "CLIP_AUDIT_CACHE_MAX_BYTES": "1GB",
           "CLIP_AUDIT_BACKOFF_SECONDS": "5, 10,20", "CLIP_AUDIT_DB_PATH": "/tmp/x/state.db",
           "CLIP_AUDIT_REPORT_BASE_URL": "https://reports.example/r", "CLIP_AUDIT_WEBHOOK_PORT": "9000"}  # fmt: skip
    settings = _load(env=env)
    assert settings.dry_run is True
    assert settings.max_download_bytes == 500 * 1024**2 and settings.cache_max_bytes == 10**9
    assert settings.backoff_seconds == (5.0, 10.0, 20.0)
    assert settings.db_path == Path("/tmp/x/state.db")
    assert settings.report_base_url == "https://reports.example/r" and settings.webhook_port == 9000


def test_token_sources_in_order() -> None:
    assert _load(stored="stored").token == "stored"
    assert _load(env={"HF_TOKEN": "hf"}, stored="stored").token == "hf"
    assert _load(env={"HF_TOKEN": "hf", "CLIP_AUDIT_TOKEN": "ours"}).token == "ours"
    assert _load(env={"CLIP_AUDIT_TOKEN": "ours"}, overrides={"token": "flag"}).token == "flag"


def test_secrets_never_in_repr_or_errors() -> None:
    settings = _load(env={"HF_TOKEN": "hf_secret_value", "CLIP_AUDIT_WEBHOOK_SECRET": "hook_secret_value"})
    assert settings.token == "hf_secret_value" and settings.webhook_secret == "hook_secret_value"
    assert "secret_value" not in repr(settings) and "secret_value" not in str(settings)
    with pytest.raises(ConfigError) as caught:
        _load(overrides={"token": 12345})
    assert "12345" not in str(caught.value)


def test_token_in_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('token = "hf_abc"\n')
    with pytest.raises(ConfigError, match="HF_TOKEN"):
        _load(config_file=config)


def test_settings_are_frozen() -> None:
    settings = _load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.dry_run = True  # type: ignore[misc]
    with pytest.raises(ConfigError, match="max_attempts"):
        dataclasses.replace(settings, max_attempts=0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLIP_AUDIT_MAX_ATTEMPTS": "three"}, "CLIP_AUDIT_MAX_ATTEMPTS.*max_attempts"),
        ({"CLIP_AUDIT_MAX_ATTEMPTS": "0"}, "max_attempts must be positive"),
        ({"CLIP_AUDIT_DRY_RUN": "maybe"}, "expected true/false"),
        ({"CLIP_AUDIT_MAX_DOWNLOAD_BYTES": "lots"}, "expected a size"),
        ({"CLIP_AUDIT_LEASE_SECONDS": "-1"}, "lease_seconds must be more than 0"),
        ({"CLIP_AUDIT_BACKOFF_SECONDS": "5,-1"}, "backoff_seconds"),
        ({"CLIP_AUDIT_DEVICE": "tpu"}, "device 'tpu'"),
        ({"CLIP_AUDIT_ENDPOINT": "ftp://hub"}, "endpoint"),
        ({"CLIP_AUDIT_WEBHOOK_PORT": "70000"}, "webhook_port"),
        ({"CLIP_AUDIT_BOT_NAME": "no spaces"}, "bot_name"),
    ],
)
def test_invalid_env_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(env=env)


def test_file_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        _load(config_file=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("poll_interval_seconds = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(config_file=broken)
    typo = tmp_path / "typo.toml"
    typo.write_text("pol_interval_seconds = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'pol_interval_seconds'"):
        _load(config_file=typo)
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('max_attempts = "many"\n')
    with pytest.raises(ConfigError, match="max_attempts"):
        _load(config_file=wrong_type)


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        _load(overrides={"nope": 1})


# -- the example settings file (docs/clip-audit.example.toml) ---------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "clip-audit.example.toml"


def test_the_committed_example_is_the_generated_one() -> None:
    from bot.settings_doc import example_toml

    assert EXAMPLE.read_text() == example_toml(), "run: clip-audit config example > docs/clip-audit.example.toml"


def test_the_example_documents_every_setting_once_with_its_default(tmp_path: Path) -> None:
    from bot.settings import FIELDS
    from bot.settings_doc import example_toml, setting_groups, uncommented

    names = [name for group in setting_groups() for name in group.names]
    assert sorted(names) == sorted(FIELDS) and len(names) == len(set(names))
    text = example_toml()
    for name in FIELDS:
        assert text.count(f"# {name} = ") + text.count(f"# {name}: ") == 1, name
    # Every key uncommented sets every setting to its default (the token is never in a file).
    active = tmp_path / "all-defaults.toml"
    active.write_text(uncommented(text))
    assert _load(config_file=active) == _load()
    assert "token" not in tomllib.loads(active.read_text())


def test_a_setting_without_a_comment_is_refused() -> None:
    from bot.settings_doc import setting_groups

    documented = ("class Settings:\n    # Hub.\n    endpoint: str = 'x'\n"
                  "    # Port and its neighbour, documented together.\n    port: int = 1\n    also: int = 2\n")
    assert [group.names for group in setting_groups(documented)] == [("endpoint",), ("port", "also")]
    undocumented = "class Settings:\n    # Hub.\n    endpoint: str = 'x'\n\n    bare: int = 1\n"
    with pytest.raises(ValueError, match="setting bare has no comment"):
        setting_groups(undocumented)
