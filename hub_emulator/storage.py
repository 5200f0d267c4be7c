"""On-disk persistence: content-addressed blobs plus one JSON document per repo.

Layout under the data directory:
    blobs/<sha256[:2]>/<sha256>     file contents, immutable (shared by every kind of repo)
    repos/<owner>/<name>.json       a model repo's Repo record (commits, refs, discussions)
    datasets/<owner>/<name>.json    a dataset repo's record (datasets have their own namespace on the Hub)

Writes go to a temporary file and are renamed into place, so a crash never leaves half a document.
Callers serialise access (EmulatorState holds one lock); blobs are immutable and safe to read concurrently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .records import Repo
from .validation import validate_repo_id

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COPY_CHUNK = 1024 * 1024


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path_of(sha256)
        if not target.exists():
            _atomic_write(target, data)
        return sha256

    def put_file(self, source: Path) -> str:
        """Streams a local file into the store without loading it whole."""
        digest = hashlib.sha256()
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                while chunk := src.read(_COPY_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            sha256 = digest.hexdigest()
            target = self.path_of(sha256)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return sha256

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path_of(sha256), "rb")

    def read(self, sha256: str) -> bytes:
        return self.path_of(sha256).read_bytes()


class RepoStorage:
    def __init__(self, data_dir: Path, *, documents: str = "repos") -> None:
        """`documents`: the folder under `data_dir` holding this kind of repo's records ("repos" for models,
        "datasets"); blobs are shared."""
        self.data_dir = data_dir
        self.repos_dir = data_dir / documents
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(data_dir / "blobs")
        self._repos: dict[str, Repo] = {}
        for repo in self._load_all():
            self._repos[repo.repo_id.lower()] = repo

    def _document_path(self, repo_id: str) -> Path:
        owner, name = validate_repo_id(repo_id).split("/")
        path = (self.repos_dir / owner / f"{name}.json").resolve()
        if self.repos_dir.resolve() not in path.parents:
            raise ValueError(f"repo id escapes the data directory: {repo_id!r}")
        return path

    def _load_all(self) -> Iterator[Repo]:
        for document in sorted(self.repos_dir.glob("*/*.json")):
            yield Repo.from_dict(json.loads(document.read_text(encoding="utf-8")))

    def get(self, repo_id: str) -> Repo | None:
        # The Hub resolves repo ids case-insensitively.
        return self._repos.get(repo_id.lower())

    def all(self) -> list[Repo]:
        return list(self._repos.values())

    def save(self, repo: Repo) -> None:
        document = json.dumps(repo.to_dict(), indent=1, sort_keys=True).encode()
        _atomic_write(self._document_path(repo.repo_id), document)
        self._repos[repo.repo_id.lower()] = repo
