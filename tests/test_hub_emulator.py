"""The Hub emulator, exercised through the real huggingface_hub client over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hub_fixtures import ADMIN_HEADERS, start_hub  # noqa: E402
from huggingface_hub import CommitOperationAdd, HfApi, constants, hf_hub_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.numpy import save_file  # noqa: E402

from hub_emulator import EmulatorHandle, HubApiError  # noqa: E402

# Small listing pages throughout, so the client must follow Link headers: for the `hub` fixture
# (conftest.py) through the marker, and for the emulators the tests below start themselves.
HUB_OPTIONS: dict[str, Any] = {"list_page_size": 2}
pytestmark = pytest.mark.hub(**HUB_OPTIONS)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(autouse=True)
def _isolated_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


def _start(data_dir: Path, **overrides: Any) -> EmulatorHandle:
    return start_hub(data_dir, **{**HUB_OPTIONS, **overrides})


def _api(hub: EmulatorHandle, token: str | None = "bot-token") -> HfApi:
    return HfApi(endpoint=hub.url, token=token if token is not None else False)


def _safetensors(path: Path, *, metadata: dict[str, str] | None = None, fill: float = 0.0) -> Path:
    tensors = {"text.proj": np.full((4, 3), fill, dtype=np.float32), "logit_scale": np.ones((1,), dtype=np.float16)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def _raw(
    hub: EmulatorHandle, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {**(ADMIN_HEADERS if path.startswith("/_emulator/") else {}), **(headers or {})}
    request = urllib.request.Request(hub.url + path, data=body, method=method, headers=headers)
    try:
        with _NO_PROXY.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


# -- listing ------------------------------------------------------------------------------------------------


def test_list_models_filters_search_sort_and_follows_pagination(hub: EmulatorHandle) -> None:
    state = hub.state
    state.create_repo("acme/clip-vit-b", tags=["clip"], library_name="open_clip",
                      pipeline_tag="zero-shot-image-classification", created_at="2026-01-01T00:00:00.000Z")  # fmt: skip
    state.create_repo("acme/siglip-so400m", tags=["siglip"], library_name="transformers",
                      pipeline_tag="zero-shot-image-classification", created_at="2026-01-02T00:00:00.000Z")  # fmt: skip
    state.create_repo("zoo/bert-base", library_name="transformers", pipeline_tag="fill-mask",
                      created_at="2026-01-03T00:00:00.000Z")  # fmt: skip
    state.create_repo("zoo/clip-tiny", tags=["clip"], library_name="transformers",
                      created_at="2026-01-04T00:00:00.000Z")  # fmt: skip
    state.create_repo("zoo/hidden-clip", tags=["clip"], private=True, created_at="2026-01-05T00:00:00.000Z")
    api = _api(hub)

    # Page size is 2, so listing 4 public repos needs the client to follow two Link headers.
    newest_first = [m.id for m in api.list_models(sort="created_at")]
    assert newest_first == ["zoo/clip-tiny", "zoo/bert-base", "acme/siglip-so400m", "acme/clip-vit-b"]
    status, headers, _ = _raw(hub, "GET", "/api/models?sort=createdAt")
    assert status == 200 and headers["Link"].startswith(f"<{hub.url}/api/models?") and 'rel="next"' in headers["Link"]

    assert [m.id for m in api.list_models(filter="clip")] == ["zoo/clip-tiny", "acme/clip-vit-b"]
    assert [m.id for m in api.list_models(filter=["clip", "open_clip"])] == ["acme/clip-vit-b"]
    assert [m.id for m in api.list_models(pipeline_tag="zero-shot-image-classification")] == [
        "acme/siglip-so400m",
        "acme/clip-vit-b",
    ]
    assert [m.id for m in api.list_models(search="SIGLIP")] == ["acme/siglip-so400m"]
    assert [m.id for m in api.list_models(author="zoo")] == ["zoo/clip-tiny", "zoo/bert-base"]
    assert [m.id for m in api.list_models(sort="created_at", limit=3)] == newest_first[:3]

    # The owner sees their private repo; others never do.
    assert "zoo/hidden-clip" not in newest_first
    owner_view = [m.id for m in HfApi(endpoint=hub.url, token="owner-token").list_models(author="zoo")]
    assert owner_view == ["zoo/clip-tiny", "zoo/bert-base"]

    # A fresh push to the oldest repo moves it to the front of sort=lastModified.
    state.push_revision("acme/clip-vit-b", files={"config.json": b"{}"}, date="2026-02-01T00:00:00.000Z")
    assert next(iter(api.list_models(sort="last_modified"))).id == "acme/clip-vit-b"

    # Default items carry no sha (as on the Hub); expand asks for exactly what is needed.
    plain = next(iter(api.list_models(search="clip-vit-b")))
    assert plain.sha is None and plain.created_at is not None
    expanded = next(iter(api.list_models(search="clip-vit-b", expand=["sha", "siblings", "lastModified"])))
    assert expanded.sha == state.repo("acme/clip-vit-b").refs["main"]
    assert {s.rfilename for s in expanded.siblings or []} == {".gitattributes", "config.json"}
    assert expanded.last_modified is not None and expanded.last_modified.month == 2


def test_list_models_rejects_unknown_sort_and_expand(hub: EmulatorHandle) -> None:
    assert _raw(hub, "GET", "/api/models?sort=bogus")[0] == 400
    assert _raw(hub, "GET", "/api/models?expand=notAField")[0] == 400


# -- model info and downloads -------------------------------------------------------------------------------


def test_model_info_by_revision_with_files_metadata(hub: EmulatorHandle, tmp_path: Path) -> None:
    weights = _safetensors(tmp_path / "a.safetensors")
    config = b'{"model_type": "clip", "architectures": ["CLIPModel"]}'
    first = hub.state.create_repo(
        "acme/clip",
        files={"model.safetensors": weights, "config.json": config},
        card_data={"base_model": "openai/clip-vit-base-patch32", "license": "mit"},
        library_name="transformers",
    )
    second = hub.state.push_revision("acme/clip", files={"extra.txt": b"new"}, deleted=["config.json"])
    api = _api(hub)

    old = api.model_info("acme/clip", revision=first, files_metadata=True)
    assert old.sha == first
    siblings = {s.rfilename: s for s in old.siblings or []}
    assert set(siblings) == {".gitattributes", "README.md", "config.json", "model.safetensors"}
    model = siblings["model.safetensors"]
    assert model.size == weights.stat().st_size
    assert model.lfs is not None and model.lfs.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert siblings["config.json"].lfs is None and siblings["config.json"].size == len(config)
    assert siblings["config.json"].blob_id == hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()
    assert old.card_data is not None and old.card_data.base_model == "openai/clip-vit-base-patch32"
    assert "base_model:openai/clip-vit-base-patch32" in (old.tags or [])
    assert old.config == {"architectures": ["CLIPModel"], "model_type": "clip"}
    assert old.safetensors is not None and old.safetensors.total == 13

    latest = api.model_info("acme/clip")
    assert latest.sha == second
    assert {s.rfilename for s in latest.siblings or []} == {".gitattributes", "README.md", "extra.txt",
                                                             "model.safetensors"}  # fmt: skip
    assert latest.siblings is not None and latest.siblings[0].size is None  # sizes only with files_metadata
    assert latest.created_at is not None and latest.last_modified is not None


def test_download_pinned_to_sha_and_safetensors_header_over_range(hub: EmulatorHandle, tmp_path: Path) -> None:
    # A header bigger than the client's first 100 kB range forces its second, exact Range request.
    big = _safetensors(tmp_path / "big.safetensors", metadata={"notes": "x" * 150_000}, fill=1.0)
    small = _safetensors(tmp_path / "small.safetensors", fill=2.0)
    pinned = hub.state.create_repo("acme/clip", files={"model.safetensors": big})
    hub.state.push_revision("acme/clip", files={"model.safetensors": small})
    api = _api(hub)

    local = hf_hub_download("acme/clip", "model.safetensors", revision=pinned, endpoint=hub.url,
                            cache_dir=tmp_path / "cache", token="bot-token")  # fmt: skip
    assert Path(local).read_bytes() == big.read_bytes()
    assert pinned in local  # cached under the pinned snapshot

    meta = api.parse_safetensors_file_metadata("acme/clip", "model.safetensors", revision=pinned)
    assert meta.metadata == {"notes": "x" * 150_000}
    assert meta.tensors["text.proj"].shape == [4, 3] and meta.parameter_count == {"F32": 12, "F16": 1}
    assert api.parse_safetensors_file_metadata("acme/clip", "model.safetensors").metadata == {}

    status, headers, body = _raw(hub, "GET", f"/acme/clip/resolve/{pinned}/model.safetensors",
                                 headers={"Range": "bytes=0-7"})  # fmt: skip
    assert status == 206 and len(body) == 8
    assert headers["Content-Range"] == f"bytes 0-7/{big.stat().st_size}"
    assert headers["X-Repo-Commit"] == pinned
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(big.read_bytes()).hexdigest()}"'
    status, headers, _ = _raw(hub, "GET", "/acme/clip/resolve/main/model.safetensors",
                              headers={"Range": "bytes=999999999-"})  # fmt: skip
    assert status == 416 and headers["Content-Range"] == f"bytes */{small.stat().st_size}"
    status, headers, body = _raw(hub, "HEAD", "/acme/clip/resolve/main/.gitattributes")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0 and "X-Linked-Size" not in headers
    assert not any(name.lower().startswith("x-xet") for name in headers)


def test_dataset_repos_are_their_own_namespace_pinned_and_read_only(hub: EmulatorHandle, tmp_path: Path) -> None:
    sha = hub.state.create_dataset("acme/caps", files={"captions.txt": b"a photo of one red circle\n"})
    hub.state.create_repo("acme/caps", files={"config.json": b"{}"})  # a model may share the id
    api = _api(hub)

    info = api.dataset_info("acme/caps", revision=sha, files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    assert info.sha == sha and set(sizes) == {".gitattributes", "captions.txt"} and sizes["captions.txt"] == 26
    assert {s.rfilename for s in api.model_info("acme/caps").siblings or []} == {".gitattributes", "config.json"}
    [entry] = api.get_paths_info("acme/caps", ["captions.txt", "missing.txt"], revision=sha, repo_type="dataset")
    assert (entry.path, entry.size) == ("captions.txt", 26)
    local = hf_hub_download("acme/caps", "captions.txt", revision=sha, repo_type="dataset", endpoint=hub.url,
                            cache_dir=tmp_path / "cache", token="bot-token")  # fmt: skip
    assert Path(local).read_bytes() == b"a photo of one red circle\n"
    assert f"datasets--acme--caps/snapshots/{sha}" in local
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("acme/missing")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("acme/caps", "config.json", revision=sha, repo_type="dataset", endpoint=hub.url,
                        cache_dir=tmp_path / "cache", token="bot-token")  # fmt: skip
    status, _, _ = _raw(hub, "POST", "/api/datasets/acme/caps/commit/main", body=b"",
                        headers={"Authorization": "Bearer owner-token"})  # fmt: skip
    assert status in (404, 405)  # no writes over HTTP


def test_error_classes_the_client_raises(hub: EmulatorHandle, tmp_path: Path) -> None:
    sha = hub.state.create_repo("acme/clip", files={"model.safetensors": _safetensors(tmp_path / "m.safetensors")})
    hub.state.create_repo("acme/secret", private=True)
    hub.state.create_repo("acme/gated", files={"model.safetensors": b"\0" * 16}, gated="manual")
    api = _api(hub)

    with pytest.raises(RepositoryNotFoundError):
        api.model_info("acme/missing")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("acme/secret")
    assert HfApi(endpoint=hub.url, token="owner-token").model_info("acme/secret").private is True
    with pytest.raises(RevisionNotFoundError):
        api.model_info("acme/clip", revision="0" * 40)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("acme/clip", "model.safetensors", revision="nope", endpoint=hub.url,
                        cache_dir=tmp_path / "c1", token="bot-token")  # fmt: skip
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("acme/clip", "missing.bin", revision=sha, endpoint=hub.url,
                        cache_dir=tmp_path / "c2", token="bot-token")  # fmt: skip

    # Gated: metadata is public, files need a granted token (401 anonymous, 403 authenticated).
    assert api.model_info("acme/gated").gated == "manual"
    for token, expected in ((False, 401), ("bot-token", 403)):
        with pytest.raises(GatedRepoError) as caught:
            hf_hub_download("acme/gated", "model.safetensors", endpoint=hub.url,
                            cache_dir=tmp_path / f"c-{expected}", token=token)  # fmt: skip
        assert caught.value.response.status_code == expected
    hub.state.grant_access("acme/gated", "auditbot")
    granted = hf_hub_download("acme/gated", "model.safetensors", endpoint=hub.url,
                              cache_dir=tmp_path / "c3", token="bot-token")  # fmt: skip
    assert Path(granted).read_bytes() == b"\0" * 16


def test_whoami_and_invalid_token(hub: EmulatorHandle) -> None:
    me = _api(hub).whoami()
    assert me["name"] == "auditbot" and len(me["id"]) == 24
    assert me["id"] == hub.state.user_id("auditbot")
    with pytest.raises(HfHubHTTPError) as caught:
        HfApi(endpoint=hub.url, token="not-a-token").whoami()
    assert caught.value.response.status_code == 401


# -- discussions and pull requests --------------------------------------------------------------------------


def test_discussions_create_list_comment_close(hub: EmulatorHandle) -> None:
    hub.state.create_repo("acme/clip")
    bot, eve = _api(hub), _api(hub, "eve-token")

    created = bot.create_discussion("acme/clip", title="clip-audit: backdoor scan", description="Findings below.")
    assert created.num == 1 and created.status == "open" and not created.is_pull_request
    assert created.events[0].content == "Findings below." and created.author == "auditbot"
    eve.create_discussion("acme/clip", title="Unrelated question")

    reply = eve.comment_discussion("acme/clip", created.num, "@auditbot please rescan")
    assert reply.content == "@auditbot please rescan" and reply.author == "eve"
    hub.state.add_comment("acme/clip", created.num, author="acme", text="thanks")

    with pytest.raises(HfHubHTTPError) as caught:
        eve.change_discussion_status("acme/clip", created.num, "closed")
    assert caught.value.response.status_code == 403
    change = bot.change_discussion_status("acme/clip", created.num, "closed", comment="Closing: clean.")
    assert change.new_status == "closed"

    details = bot.get_discussion_details("acme/clip", created.num)
    assert details.status == "closed"
    assert [type(e).__name__ for e in details.events] == [
        "DiscussionComment", "DiscussionComment", "DiscussionComment", "DiscussionComment", "DiscussionStatusChange",
    ]  # fmt: skip
    assert [e.content for e in details.events[:4]] == [
        "Findings below.", "@auditbot please rescan", "thanks", "Closing: clean."
    ]  # fmt: skip

    listed = list(bot.get_repo_discussions("acme/clip"))
    assert [(d.num, d.status) for d in listed] == [(2, "open"), (1, "closed")]
    assert [d.num for d in bot.get_repo_discussions("acme/clip", author="auditbot")] == [1]
    assert [d.num for d in bot.get_repo_discussions("acme/clip", discussion_status="open")] == [2]
    with pytest.raises(HfHubHTTPError):
        bot.create_discussion("acme/clip", title="no")  # titles are 3..200 characters


def test_discussion_listing_paginates(tmp_path: Path) -> None:
    handle = _start(tmp_path / "data", discussion_page_size=2)
    try:
        handle.state.create_repo("acme/clip")
        for index in range(5):
            handle.state.create_discussion("acme/clip", author="eve", title=f"question {index}")
        assert [d.num for d in _api(handle).get_repo_discussions("acme/clip")] == [5, 4, 3, 2, 1]
    finally:
        handle.stop()


def test_concurrent_writers_get_distinct_discussion_numbers(hub: EmulatorHandle) -> None:
    hub.state.create_repo("acme/busy")
    errors: list[BaseException] = []

    def open_threads(token: str) -> None:
        try:
            api = _api(hub, token)
            for index in range(5):
                num = api.create_discussion("acme/busy", title=f"{token} {index}").num
                api.comment_discussion("acme/busy", num, "ping")
        except BaseException as error:  # noqa: BLE001 - surfaced by the assert below
            errors.append(error)

    workers = [threading.Thread(target=open_threads, args=(token,))
               for token in ("owner-token", "bot-token", "eve-token")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert errors == []
    nums = sorted(d.num for d in _api(hub).get_repo_discussions("acme/busy"))
    assert nums == list(range(1, 16))
    assert all(len(d.events) == 2 for d in hub.state.repo("acme/busy").discussions)


def test_disabled_discussions_answer_403(hub: EmulatorHandle) -> None:
    hub.state.create_repo("acme/quiet", discussions_disabled=True)
    api = _api(hub)
    for call in (
        lambda: list(api.get_repo_discussions("acme/quiet")),
        lambda: api.create_discussion("acme/quiet", title="clip-audit report"),
        lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="a.md", repo_id="acme/quiet", create_pr=True),
    ):
        with pytest.raises(HfHubHTTPError) as caught:
            call()
        assert caught.value.response.status_code == 403
        assert not isinstance(caught.value, RepositoryNotFoundError)


def test_create_commit_as_pull_request_then_merge(hub: EmulatorHandle) -> None:
    main_sha = hub.state.create_repo("acme/clip", card_data={"license": "mit"})
    bot = _api(hub)

    with pytest.raises(HfHubHTTPError) as caught:  # not the owner: direct pushes are refused
        bot.upload_file(path_or_fileobj=b"x", path_in_repo="x.md", repo_id="acme/clip")
    assert caught.value.response.status_code == 403

    info = bot.create_commit(
        "acme/clip",
        operations=[CommitOperationAdd("audit/report.json", b'{"verdict": "clean"}')],
        commit_message="Add clip-audit report",
        commit_description="Scanned at " + main_sha,
        create_pr=True,
    )
    assert info.pr_num == 1 and info.pr_revision == "refs/pr/1"
    assert info.pr_url == f"{hub.url}/acme/clip/discussions/1"
    assert bot.model_info("acme/clip").sha == main_sha  # main untouched
    assert bot.model_info("acme/clip", revision="refs/pr/1").sha == info.oid

    prs = list(bot.get_repo_discussions("acme/clip", discussion_type="pull_request"))
    assert [(d.num, d.title, d.is_pull_request, d.status) for d in prs] == [
        (1, "Add clip-audit report", True, "open")
    ]
    details = bot.get_discussion_details("acme/clip", 1)
    assert details.target_branch == "refs/heads/main" and details.conflicting_files == []
    assert details.events[0].content == "Scanned at " + main_sha
    assert details.diff is not None and "+++ b/audit/report.json" in details.diff

    # The PR author may push more commits to refs/pr/1; the owner merges.
    bot.upload_file(path_or_fileobj=b"more", path_in_repo="audit/more.txt", repo_id="acme/clip",
                    revision="refs/pr/1")  # fmt: skip
    HfApi(endpoint=hub.url, token="owner-token").merge_pull_request("acme/clip", 1)
    merged = bot.model_info("acme/clip")
    assert merged.sha != main_sha
    assert {"audit/report.json", "audit/more.txt", "README.md"} <= {s.rfilename for s in merged.siblings or []}
    assert bot.get_discussion_details("acme/clip", 1).status == "merged"

    owner_commit = HfApi(endpoint=hub.url, token="owner-token").upload_file(
        path_or_fileobj=b"owner", path_in_repo="owner.txt", repo_id="acme/clip", parent_commit=merged.sha
    )
    assert bot.model_info("acme/clip").sha == owner_commit.oid
    draft = bot.create_pull_request("acme/clip", title="clip-audit badge")
    assert draft.status == "draft" and draft.git_reference == "refs/pr/2"
    bot.upload_file(path_or_fileobj=b"badge", path_in_repo="badge.svg", repo_id="acme/clip", revision="refs/pr/2")
    assert bot.get_discussion_details("acme/clip", 2).status == "open"
    with pytest.raises(HfHubHTTPError) as stale:  # parent_commit no longer the head
        HfApi(endpoint=hub.url, token="owner-token").upload_file(
            path_or_fileobj=b"late", path_in_repo="late.txt", repo_id="acme/clip", parent_commit=merged.sha
        )
    assert stale.value.response.status_code == 412


def test_create_repo_and_upload_through_the_client(hub: EmulatorHandle) -> None:
    owner = HfApi(endpoint=hub.url, token="owner-token")
    url = owner.create_repo("acme/fresh")
    assert url.repo_id == "acme/fresh"
    owner.create_repo("acme/fresh", exist_ok=True)
    commit = owner.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\n# Card\n", path_in_repo="README.md",
                               repo_id="acme/fresh")  # fmt: skip
    info = owner.model_info("acme/fresh")
    assert info.sha == commit.oid and info.card_data is not None and info.card_data.license == "mit"
    assert owner.list_repo_files("acme/fresh") == [".gitattributes", "README.md"]


# -- webhooks, admin, persistence, validation ---------------------------------------------------------------


class _Receiver:
    """A webhook endpoint. `answers`: what it does with each delivery of scope `scope` in turn (a status code,
    "drop" to close the connection without answering, or ("sleep", seconds, status)); 204 to everything else."""

    def __init__(self, answers: list[Any] | None = None, scope: str = "repo") -> None:
        self.deliveries: queue.Queue[tuple[dict[str, str], dict[str, Any]]] = queue.Queue()
        received = self.deliveries
        pending = list(answers or [])

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = json.loads(body)
                received.put((dict(self.headers), payload))
                answer = pending.pop(0) if pending and payload["event"]["scope"] == scope else 204
                if answer == "drop":
                    self.close_connection = True
                    return
                if isinstance(answer, tuple):
                    _, seconds, answer = answer
                    time.sleep(seconds)
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def next(self) -> tuple[dict[str, str], dict[str, Any]]:
        return self.deliveries.get(timeout=10)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_deliver_v3_payloads_with_secret(tmp_path: Path) -> None:
    from huggingface_hub import WebhookPayload

    receiver = _Receiver()
    handle = _start(tmp_path / "data", webhook_url=receiver.url, webhook_secret="s3cret")
    try:
        handle.state.create_repo("acme/clip")
        scopes = [receiver.next()[1]["event"]["scope"] for _ in range(2)]
        assert scopes == ["repo", "repo.content"]

        num = _api(handle, "eve-token").create_discussion("acme/clip", title="Scan please", description="@auditbot")
        headers, payload = receiver.next()
        assert headers["X-Webhook-Secret"] == "s3cret"
        assert payload["event"] == {"action": "create", "scope": "discussion"}
        assert payload["discussion"]["num"] == num.num and payload["comment"]["content"] == "@auditbot"
        assert payload["discussion"]["author"]["id"] == handle.state.user_id("eve")
        WebhookPayload.model_validate(payload)

        status, _, _ = _raw(handle, "POST", f"/_emulator/repos/acme/clip/discussions/{num.num}/comments",
                            body=json.dumps({"author": "acme", "text": "@auditbot go"}).encode(),
                            headers={"Content-Type": "application/json"})  # fmt: skip
        assert status == 201
        _, payload = receiver.next()
        assert payload["event"] == {"action": "create", "scope": "discussion.comment"}
        assert payload["comment"]["content"] == "@auditbot go"
        assert payload["comment"]["author"]["id"] == handle.state.user_id("acme")
        WebhookPayload.model_validate(payload)

        new_sha = handle.state.push_revision("acme/clip", files={"model.safetensors": b"\0" * 8})
        _, payload = receiver.next()
        assert payload["event"] == {"action": "update", "scope": "repo.content"}
        assert payload["repo"]["headSha"] == new_sha
        assert payload["updatedRefs"][0]["ref"] == "refs/heads/main"
        assert payload["updatedRefs"][0]["newSha"] == new_sha
        assert WebhookPayload.model_validate(payload).repo.head_sha == new_sha

        log = json.loads(_raw(handle, "GET", "/_emulator/webhook-log?flush=1")[2])
        assert [entry["status"] for entry in log["deliveries"]] == [204] * 5
        assert "s3cret" not in json.dumps(log)
    finally:
        handle.stop()
        receiver.close()


def test_state_persists_across_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = _start(data_dir)
    try:
        sha = first.state.create_repo("acme/clip", files={"weights.bin": b"\1" * 32}, tags=["clip"])
        _api(first).create_discussion("acme/clip", title="clip-audit report", description="clean")
    finally:
        first.stop()

    second = _start(data_dir)
    try:
        api = _api(second)
        assert api.model_info("acme/clip").sha == sha
        assert [d.title for d in api.get_repo_discussions("acme/clip")] == ["clip-audit report"]
        local = hf_hub_download("acme/clip", "weights.bin", revision=sha, endpoint=second.url,
                                cache_dir=tmp_path / "cache", token="bot-token")  # fmt: skip
        assert Path(local).read_bytes() == b"\1" * 32
    finally:
        second.stop()


def test_admin_routes_seed_repos_and_inject_faults(hub: EmulatorHandle) -> None:
    spec = {
        "repo_id": "acme/seeded",
        "files": {
            "config.json": {"text": '{"model_type": "clip"}'},
            "w.bin": {"base64": base64.b64encode(b"ab").decode()},
        },
        "tags": ["clip"],
        "created_at": "2026-01-02T12:00:00.000Z",
    }
    status, _, body = _raw(hub, "POST", "/_emulator/repos", body=json.dumps(spec).encode())
    assert status == 201
    info = _api(hub).model_info("acme/seeded")
    assert info.sha == json.loads(body)["sha"] and "clip" in (info.tags or [])
    assert info.created_at is not None and info.created_at.isoformat() == "2026-01-02T12:00:00+00:00"

    fault = {"path_prefix": "/api/models/acme/seeded", "status": 429, "count": 1, "retry_after": 7}
    assert _raw(hub, "POST", "/_emulator/faults", body=json.dumps(fault).encode())[0] == 201
    with pytest.raises(HfHubHTTPError) as caught:
        _api(hub).model_info("acme/seeded")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert caught.value.response.headers["RateLimit"] == '"api";r=0;t=7'
    assert _api(hub).model_info("acme/seeded").sha == info.sha  # the fault was used up


def test_seed_file_is_applied_at_start(tmp_path: Path) -> None:
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    weights = _safetensors(seed_dir / "weights.safetensors")
    seed = {
        "tokens": {"seed-token": "carol"},
        "repos": [{
            "repo_id": "acme/seeded-clip",
            "files": {"open_clip_model.safetensors": {"path": "weights.safetensors"}},
            "library_name": "open_clip",
            "revisions": [{"files": {"open_clip_config.json": {"text": "{}"}}, "message": "add config"}],
            "discussions": [{"author": "eve", "title": "Is this safe?", "comments": [{"author": "acme", "text": "yes"}]}],
        }],
    }  # fmt: skip
    seed_file = seed_dir / "seed.json"
    seed_file.write_text(json.dumps(seed))
    handle = _start(tmp_path / "data", seed_file=seed_file)
    try:
        api = HfApi(endpoint=handle.url, token="seed-token")
        assert api.whoami()["name"] == "carol"
        info = api.model_info("acme/seeded-clip", files_metadata=True)
        sizes = {s.rfilename: s.size for s in info.siblings or []}
        assert sizes["open_clip_model.safetensors"] == weights.stat().st_size and "open_clip_config.json" in sizes
        [discussion] = api.get_repo_discussions("acme/seeded-clip")
        assert [e.content for e in api.get_discussion_details("acme/seeded-clip", discussion.num).events] == ["", "yes"]
    finally:
        handle.stop()
    seed["repos"][0]["files"] = {"x": {"path": "../../etc/passwd"}}
    seed_file.write_text(json.dumps(seed))
    with pytest.raises(HubApiError):
        _start(tmp_path / "data2", seed_file=seed_file)


def test_admin_token_guards_admin_routes(tmp_path: Path) -> None:
    handle = _start(tmp_path / "data", admin_token="adm")
    try:
        assert _raw(handle, "GET", "/_emulator/health")[0] == 403  # _raw sends the standard token: not this one
        assert _raw(handle, "GET", "/_emulator/health", headers={"X-Emulator-Admin-Token": "adm"})[0] == 200
    finally:
        handle.stop()


def test_admin_token_is_generated_when_none_is_given(tmp_path: Path) -> None:
    handle = _start(tmp_path / "data", admin_token=None)
    try:
        token_file = tmp_path / "data" / "admin-token"
        token = token_file.read_text().strip()
        assert token == handle.admin_token and len(token) >= 24
        assert token_file.stat().st_mode & 0o777 == 0o600
        for headers in ({}, {"X-Emulator-Admin-Token": ""}, {"X-Emulator-Admin-Token": token[:-1]}):
            status, _, _ = _raw(handle, "POST", "/_emulator/faults", body=b'{"status": 503}', headers=headers)
            assert status == 403
        assert _api(handle).list_models() is not None  # only the admin routes are guarded
        assert _raw(handle, "GET", "/_emulator/health", headers={"X-Emulator-Admin-Token": token})[0] == 200
        assert token not in repr(handle.server.config)
    finally:
        handle.stop()


# -- request bodies: capped while they are read ---------------------------------------------------------------


def _send_raw(hub: EmulatorHandle, head: str, body_parts: Iterator[bytes]) -> tuple[int | None, int]:
    """Writes a request by hand; returns (the status answered, or None if none came; bytes of body written)."""
    import socket

    host, port = hub.server.server_address[:2]
    written = 0
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for part in body_parts:
                sock.sendall(part)
                written += len(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: what matters is what it answered
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            return None, written
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return (int(match.group(1)) if match else None), written


def test_bodies_over_their_cap_are_refused_with_413_before_being_read(tmp_path: Path) -> None:
    handle = _start(tmp_path / "data", max_json_bytes=1024, max_upload_bytes=64 * 1024)
    try:
        handle.state.create_repo("acme/clip")
        num = handle.state.create_discussion("acme/clip", author="eve", title="Is it safe?")
        comment_path = f"/api/models/acme/clip/discussions/{num}/comment"
        auth = {"Authorization": "Bearer eve-token", "Content-Type": "application/json"}

        big = json.dumps({"comment": "x" * 2000}).encode()
        assert _raw(handle, "POST", comment_path, body=big, headers=auth)[0] == 413
        assert _raw(handle, "POST", comment_path, body=json.dumps({"comment": "hi"}).encode(), headers=auth)[0] == 200

        # A declared length past the cap is answered at once: the 4 GiB never has to be sent.
        head = (f"POST {comment_path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer eve-token\r\n"
                f"Content-Length: {4 * 1024**3}\r\n\r\n")
        assert _send_raw(handle, head, iter(()))[0] == 413

        # A chunked body declares no length: it is counted as it arrives, and reading stops past the cap.
        def chunks() -> Iterator[bytes]:
            for _ in range(4096):  # 16 MiB offered in 4 KiB chunks
                yield b"1000\r\n" + b"x" * 4096 + b"\r\n"

        head = (f"POST {comment_path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer eve-token\r\n"
                "Transfer-Encoding: chunked\r\n\r\n")
        status, written = _send_raw(handle, head, chunks())
        assert status in (413, None) and written < 4 * 1024**2  # the server stopped reading near its 1 KiB cap
        assert _send_raw(handle, head, iter([b"zz-not-hex\r\n"]))[0] == 400

        # Upload routes take more than a JSON document, up to their own cap.
        def seed(repo_id: str, size: int) -> int:
            spec = {"repo_id": repo_id, "files": {"w.bin": {"base64": base64.b64encode(b"\1" * size).decode()}}}
            return _raw(handle, "POST", "/_emulator/repos", body=json.dumps(spec).encode())[0]

        assert seed("acme/up", 20_000) == 201
        assert seed("acme/up2", 60_000) == 413
        assert not handle.state.has_repo("acme/up2")
        # An admin request without the token is refused before its body is read, whatever its size.
        head = f"POST /_emulator/repos HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * 1024**3}\r\n\r\n"
        assert _send_raw(handle, head, iter(()))[0] == 403
    finally:
        handle.stop()


# -- injected faults ----------------------------------------------------------------------------------------


def _fault(hub: EmulatorHandle, **spec: Any) -> int:
    status, _, body = _raw(hub, "POST", "/_emulator/faults", body=json.dumps(spec).encode())
    assert status == 201, body
    return json.loads(body)["id"]


def _fired(hub: EmulatorHandle, fault_id: int) -> int:
    listing = json.loads(_raw(hub, "GET", "/_emulator/faults")[2])
    return next(f["fired"] for f in listing["active"] + listing["spent"] if f["id"] == fault_id)


def test_status_faults_come_in_bursts_scoped_by_path_and_method(hub: EmulatorHandle) -> None:
    hub.state.create_repo("acme/clip")
    hub.state.create_repo("acme/other")
    burst = _fault(hub, path_prefix="/api/models/acme/clip", method="GET", status=503, count=4, burst=2, gap=1)
    statuses = [_raw(hub, "GET", "/api/models/acme/other")[0]]  # another path: untouched
    statuses += [_raw(hub, "POST", "/api/models/acme/clip/paths-info/main", body=b"{}")[0]]  # another method
    statuses += [_raw(hub, "GET", "/api/models/acme/clip")[0] for _ in range(7)]
    assert statuses == [200, 200, 503, 503, 200, 503, 503, 200, 200]
    assert _fired(hub, burst) == 4

    limited = _fault(hub, path_prefix="/api/models/acme/clip", status=429, retry_after=2)
    status, headers, _ = _raw(hub, "GET", "/api/models/acme/clip")
    assert (status, headers["Retry-After"], headers["RateLimit"]) == (429, "2", '"api";r=0;t=2')
    assert "RateLimit-Policy" in headers and _fired(hub, limited) == 1
    listing = json.loads(_raw(hub, "GET", "/_emulator/faults")[2])
    assert listing["active"] == [] and {f["id"] for f in listing["spent"]} == {burst, limited}

    for bad in ({"status": 200}, {"kind": "stall"}, {"kind": "drop", "status": 503}, {"kind": "slow"},
                {"status": 503, "count": 0}, {"status": 503, "colour": "red"}, {"kind": "explode"}):
        assert _raw(hub, "POST", "/_emulator/faults", body=json.dumps(bad).encode())[0] == 400, bad
    _fault(hub, status=500, count=100)
    assert _raw(hub, "DELETE", "/_emulator/faults")[0] == 200
    assert _raw(hub, "GET", "/api/models/acme/clip")[0] == 200


def test_a_dropped_connection_happens_after_the_request_was_handled(hub: EmulatorHandle) -> None:
    import httpx2

    hub.state.create_repo("acme/clip")
    api = _api(hub, "eve-token")
    num = api.create_discussion("acme/clip", title="Scan please", description="").num
    dropped = _fault(hub, kind="drop", path_prefix=f"/api/models/acme/clip/discussions/{num}/comment",
                     method="POST")  # fmt: skip
    with pytest.raises(httpx2.TransportError):
        api.comment_discussion("acme/clip", num, "first")
    assert _fired(hub, dropped) == 1
    # The Hub did the work before the connection went: a client that retries blindly posts twice.
    assert [e.content for e in api.get_discussion_details("acme/clip", num).events][1:] == ["first"]

    head_drop = _fault(hub, kind="drop", path_prefix="/api/models/acme/clip", method="GET", drop_after_bytes=5)
    with pytest.raises(httpx2.TransportError):
        api.model_info("acme/clip")
    assert _fired(hub, head_drop) == 1 and api.model_info("acme/clip").id == "acme/clip"


def test_stalled_and_slow_responses_arrive_whole_or_time_out(hub: EmulatorHandle, tmp_path: Path) -> None:
    sha = hub.state.create_repo("acme/clip", files={"weights.bin": bytes(range(256)) * 8})
    _fault(hub, kind="slow", path_prefix="/acme/clip/resolve/", bytes_per_s=8192)
    local = hf_hub_download("acme/clip", "weights.bin", revision=sha, endpoint=hub.url, token="bot-token",
                            cache_dir=tmp_path / "cache")  # fmt: skip
    assert Path(local).read_bytes() == bytes(range(256)) * 8

    _fault(hub, kind="stall", path_prefix="/api/models/acme/clip", stall_s=0.2)
    assert _api(hub).model_info("acme/clip").sha == sha  # held back, then answered in full

    stalled = _fault(hub, kind="stall", path_prefix="/api/models/acme/clip", stall_s=600)
    request = urllib.request.Request(hub.url + "/api/models/acme/clip")
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        _NO_PROXY.open(request, timeout=0.5).read()
    assert _fired(hub, stalled) == 1  # stopping the emulator (the fixture) ends the stall: no 600 s wait


# -- webhook redelivery -------------------------------------------------------------------------------------


def _deliveries(hub: EmulatorHandle) -> dict[str, Any]:
    return json.loads(_raw(hub, "GET", "/_emulator/webhook-deliveries?flush=1")[2])


def test_failed_webhook_deliveries_are_retried_with_backoff(tmp_path: Path) -> None:
    # the "repo" event is answered 500, then the connection is dropped, then too late; "repo.content" gets 204
    receiver = _Receiver([500, "drop", ("sleep", 1.0, 204)], scope="repo")
    handle = _start(tmp_path / "data", webhook_url=receiver.url, webhook_secret="s3cret", webhook_backoff_s=0.05,
                    webhook_max_attempts=3, webhook_timeout_s=0.5)  # fmt: skip
    try:
        handle.state.create_repo("acme/clip")
        report = _deliveries(handle)
        assert report["settled"] is True
        assert report["counts"] == {"delivered": 1, "pending": 0, "failed": 1}
        created, content = sorted(report["deliveries"], key=lambda d: d["id"])
        assert (created["scope"], created["outcome"]) == ("repo", "failed")
        assert [a["status"] for a in created["attempts"]] == [500, None, None]  # 3 attempts, then it gave up
        assert created["attempts"][1]["error"] and "timed out" in created["attempts"][2]["error"]
        assert (content["scope"], content["outcome"], len(content["attempts"])) == ("repo.content", "delivered", 1)
        payloads = [receiver.next()[1] for _ in range(4)]
        assert [p["event"]["scope"] for p in payloads].count("repo") == 3  # the same event, delivered again
        assert len({json.dumps(p, sort_keys=True) for p in payloads if p["event"]["scope"] == "repo"}) == 1
        log = json.loads(_raw(handle, "GET", "/_emulator/webhook-log")[2])["deliveries"]
        assert sorted((e["delivery"], e["attempt"]) for e in log) == [(1, 1), (1, 2), (1, 3), (2, 1)]
        assert "s3cret" not in json.dumps(log)
    finally:
        handle.stop()
        receiver.close()


def test_a_delivery_waiting_for_its_retry_does_not_hold_up_new_events(tmp_path: Path) -> None:
    receiver = _Receiver([503])
    handle = _start(tmp_path / "data", webhook_url=receiver.url, webhook_backoff_s=600)
    try:
        handle.state.create_repo("acme/clip")  # "repo" gets 503 and waits 600 s; "repo.content" goes through
        first, second = receiver.next()[1], receiver.next()[1]
        assert (first["event"]["scope"], second["event"]["scope"]) == ("repo", "repo.content")
        report = json.loads(_raw(handle, "GET", "/_emulator/webhook-deliveries")[2])
        waiting = next(d for d in report["deliveries"] if d["scope"] == "repo")
        assert waiting["outcome"] == "pending" and waiting["next_attempt_at"] is not None
        assert report["counts"]["pending"] == 1
    finally:
        handle.stop()  # drops the waiting retry
        receiver.close()


def test_rejects_traversal_in_repo_ids_and_paths(hub: EmulatorHandle, tmp_path: Path) -> None:
    data_dir = hub.server.config.data_dir
    for repo_id in ("../escape", "acme/..", "acme/a/b", "acme/.hidden"):
        status, _, _ = _raw(hub, "POST", "/_emulator/repos", body=json.dumps({"repo_id": repo_id}).encode())
        assert status == 400, repo_id
    hub.state.create_repo("acme/clip")
    ndjson = b"\n".join(
        json.dumps(line).encode()
        for line in (
            {"key": "header", "value": {"summary": "evil"}},
            {"key": "file", "value": {"path": "../../outside.txt", "content": "eA==", "encoding": "base64"}},
        )
    )
    headers = {"Authorization": "Bearer owner-token", "Content-Type": "application/x-ndjson"}
    status, _, _ = _raw(hub, "POST", "/api/models/acme/clip/commit/main", body=ndjson, headers=headers)
    assert status == 400
    assert not (tmp_path / "outside.txt").exists()
    assert sorted(p.name for p in data_dir.iterdir()) == ["blobs", "datasets", "repos"]
    with pytest.raises(ValueError):
        hub.state.create_repo("acme/ok", files={"a/../../b": b"x"})


# -- the command line (python -m hub_emulator), run as a real process ---------------------------------------

_REPO_ROOT = Path(__file__).resolve().parents[1]
_CLI_TIMEOUT_S = 60.0  # generous: the test machine may be busy; every wait below is bounded by it
_URL_LINE = re.compile(r"^Hub emulator on (http://127\.0\.0\.1:(\d+)) ")


def _cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hub_emulator", *args]


def _cli_env() -> dict[str, str]:
    """The test's environment without any HUB_EMULATOR_* secrets, so only the arguments given count."""
    return {key: value for key, value in os.environ.items() if not key.startswith("HUB_EMULATOR_")}


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli_command(*args), cwd=_REPO_ROOT, env=_cli_env(), capture_output=True, text=True,
                          timeout=_CLI_TIMEOUT_S, check=False)  # fmt: skip


class _ServingCli:
    """A background `python -m hub_emulator`, its stdout read line by line (on a thread) with a deadline."""

    def __init__(self, proc: subprocess.Popen[str], stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, name="cli-stdout", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output: the process exited

    def wait_for_line(self, pattern: re.Pattern[str], timeout_s: float = _CLI_TIMEOUT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.0)) if remaining > 0 else None
            except queue.Empty:
                line = None
            if line is None:
                pytest.fail(f"no stdout line matching {pattern.pattern!r} within {timeout_s}s "
                            f"(exit code {self.proc.poll()}); stdout so far: {self.seen!r}; "
                            f"stderr: {self.stderr_path.read_text(errors='replace')!r}")  # fmt: skip
            self.seen.append(line)
            found = pattern.search(line)
            if found:
                return found

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            self._reader.join(timeout=5)
            if self.proc.stdout is not None and not self._reader.is_alive():
                self.proc.stdout.close()


@contextmanager
def _serving_cli(tmp_path: Path, *args: str) -> Iterator[_ServingCli]:
    stderr_path = tmp_path / "cli-stderr.txt"
    command = _cli_command("--data-dir", str(tmp_path / "cli-data"), "--port", "0", *args)
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(command, cwd=_REPO_ROOT, env=_cli_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)  # fmt: skip
        cli = _ServingCli(proc, stderr_path)
        try:
            yield cli
        finally:
            cli.stop()


def test_cli_help_exits_zero() -> None:
    result = _run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: hub-emulator")
    for option in ("--data-dir", "--port", "--token", "--seed-zoo"):
        assert option in result.stdout


@pytest.mark.parametrize("token", ["abc", "hf_AbCdEfGhIjKlMnOpQrStUv"])
def test_cli_malformed_token_is_a_usage_error_that_hides_the_token(tmp_path: Path, token: str) -> None:
    result = _run_cli("--data-dir", str(tmp_path / "cli-data"), "--token", token)
    assert result.returncode == 4
    assert "error" in result.stderr and "TOKEN=USER" in result.stderr
    assert token not in result.stderr
    assert token not in result.stdout
    assert not (tmp_path / "cli-data").exists()  # it stopped before touching the data dir


def test_cli_serves_on_a_free_port(tmp_path: Path) -> None:
    with _serving_cli(tmp_path) as cli:
        url, port = cli.wait_for_line(_URL_LINE).groups()
        assert int(port) > 0
        with _NO_PROXY.open(urllib.request.Request(url + "/api/models"), timeout=10) as response:
            assert response.status == 200
            assert response.headers.get_content_type() == "application/json"
            assert json.loads(response.read()) == []
    assert cli.proc.returncode is not None  # stopped


def test_cli_seed_zoo_with_no_zoo_seeds_nothing_then_serves(tmp_path: Path) -> None:
    cache_dir = tmp_path / "empty-cache"
    cache_dir.mkdir()
    with _serving_cli(tmp_path, "--seed-zoo", str(cache_dir)) as cli:
        cli.wait_for_line(re.compile(r"^seeded 0 zoo repo\(s\)"))
        cli.wait_for_line(_URL_LINE)


def test_cli_writes_its_admin_token_and_arms_faults_from_the_command_line(tmp_path: Path) -> None:
    fault = json.dumps({"status": 503, "count": 1, "retry_after": 1})
    with _serving_cli(tmp_path, "--fault", fault) as cli:
        token_file = Path(cli.wait_for_line(re.compile(r"^admin token written to (\S+)$")).group(1))
        url = cli.wait_for_line(_URL_LINE).group(1)
        statuses = []
        for _ in range(2):
            try:
                with _NO_PROXY.open(urllib.request.Request(url + "/api/models"), timeout=10) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
        assert statuses == [503, 200]
        admin = urllib.request.Request(url + "/_emulator/faults",
                                       headers={"X-Emulator-Admin-Token": token_file.read_text().strip()})
        with _NO_PROXY.open(admin, timeout=10) as response:
            assert [f["fired"] for f in json.loads(response.read())["spent"]] == [1]
    assert token_file == tmp_path / "cli-data" / "admin-token"
    result = _run_cli("--data-dir", str(tmp_path / "cli-data2"), "--fault", '{"kind": "stall"}')
    assert result.returncode == 4 and "stall_s" in result.stderr
