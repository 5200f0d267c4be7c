"""The job pipeline's isolation of untrusted weights from credentials."""

from __future__ import annotations

from pathlib import Path


def test_scanning_child_gets_no_secrets():
    from bot.scanning.isolation import child_environment

    env = child_environment({"HF_TOKEN": "hf_x", "CLIP_AUDIT_TOKEN": "y", "CLIP_AUDIT_WEBHOOK_SECRET": "z",
                             "HUGGING_FACE_HUB_TOKEN": "w", "MY_GITHUB_TOKEN": "v", "PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin", "HF_HUB_OFFLINE": "1"}


def test_the_anchor_cache_loads_a_base_once_and_keeps_the_last_few(tmp_path):
    from bot.anchors.selection import LocalBase
    from bot.scanning.child import AnchorCache

    loads: list[str] = []

    def load(base):
        loads.append(base.id)
        return object()

    cache = AnchorCache(size=2)
    a, b, c = (LocalBase(id=n, path=tmp_path / n, sha=f"{n}-sha") for n in "abc")
    first = cache(a, load)
    assert cache(a, load) is first and loads == ["a"]
    cache(b, load)
    cache(a, load)           # a is the most recent again
    cache(c, load)           # ... so b is the one dropped
    assert loads == ["a", "b", "c"]
    cache(a, load)
    cache(b, load)
    assert loads == ["a", "b", "c", "b"]
    # another commit at the same path is another base
    cache(LocalBase(id="a", path=tmp_path / "a", sha="newer"), load)
    assert loads[-1] == "a"


def test_a_resident_scanner_keeps_one_token_free_child_and_replaces_it_when_it_dies(clip_zoo, tmp_path, monkeypatch):
    import os
    import signal

    import pytest

    from bot.anchors.selection import LocalBase
    from bot.errors import ClipAuditError
    from bot.scan_record import Verdict
    from bot.scanning.isolation import ResidentScanner
    from bot.settings import Settings
    from bot.zoo.catalog import anchor_name

    monkeypatch.setenv("HF_TOKEN", "hf_secret_the_child_must_not_see")
    base = clip_zoo["base"]
    bases = [LocalBase(id=anchor_name(base.recipe), path=base.path)]
    scanner = ResidentScanner(Settings(device="cpu", token="hf_secret_the_child_must_not_see"))
    try:
        clean = scanner.scan(clip_zoo["benign"].path, subfolder=None, candidates=bases, registered=[bases[0].id],
                             model_name="acme/benign", revision="a" * 40)
        pid = scanner._proc.pid
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"hf_secret_the_child_must_not_see" not in environ
        backdoor = scanner.scan(clip_zoo["text-on-pair"].path, subfolder=None, candidates=bases,
                                registered=[bases[0].id], model_name="mallory/pair", revision="b" * 40)
        assert (clean.verdict, backdoor.verdict) == (Verdict.CLEAN, Verdict.BACKDOOR)
        assert (clean.model, backdoor.model) == ("acme/benign", "mallory/pair")
        assert scanner._proc.pid == pid  # the same child took both scans

        os.kill(pid, signal.SIGKILL)
        scanner._proc.wait()
        empty = tmp_path / "empty"
        empty.mkdir()
        with pytest.raises(ClipAuditError, match="mallory/empty"):
            scanner.scan(empty, subfolder=None, candidates=bases, registered=[], model_name="mallory/empty",
                         revision="c" * 40)
        # a fresh child answered, and a scan that fails as a user's mistake does not end it
        assert scanner._proc is not None and scanner._proc.pid != pid and scanner._proc.poll() is None
    finally:
        scanner.close()
    assert scanner._proc is None
