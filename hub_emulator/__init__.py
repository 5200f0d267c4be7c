"""A local Hugging Face Hub emulator: a real HTTP server the unmodified huggingface_hub client can talk to.

Typical use in tests:

    handle = start_in_thread(EmulatorConfig(data_dir=tmp_path, tokens={"tok": "alice"}))
    handle.state.create_repo("acme/clip", files={"model.safetensors": path}, tags=["clip"])
    HfApi(endpoint=handle.url, token="tok").model_info("acme/clip")
    handle.stop()

Set HF_HUB_DISABLE_XET=1 in the client process: the emulator never offers Xet storage.
"""

from .api_errors import HubApiError
from .records import Commit, Discussion, Event, FileEntry, Repo
from .seed import DiscussionSeed, RepoSeed, RevisionSeed, seed_from_file, seed_repo
from .server import (
    EmulatorConfig,
    EmulatorHandle,
    EmulatorServer,
    build_state,
    create_server,
    serve_until_interrupted,
    start_in_thread,
)
from .state import CommitResult, EmulatorState
from .webhooks import WebhookConfig, WebhookDispatcher

__all__ = [
    "Commit",
    "CommitResult",
    "Discussion",
    "DiscussionSeed",
    "EmulatorConfig",
    "EmulatorHandle",
    "EmulatorServer",
    "EmulatorState",
    "Event",
    "FileEntry",
    "HubApiError",
    "Repo",
    "RepoSeed",
    "RevisionSeed",
    "WebhookConfig",
    "WebhookDispatcher",
    "build_state",
    "create_server",
    "serve_until_interrupted",
    "seed_from_file",
    "seed_repo",
    "start_in_thread",
]
