"""Every exception clip-audit raises, and the exit code each one maps to.

Exit codes, the same for every command (README, "Exit codes"):
  0 success (`scan`: clean), 1 backdoor found (`scan` only), 2 error (`scan`: also inconclusive),
  3 nothing scannable, 4 usage (a wrong flag or setting; a path, Hub repo, revision or state database that is
  not there), 130 interrupted.
"""

from __future__ import annotations

import enum

EXIT_CLEAN = 0
EXIT_BACKDOOR = 1
EXIT_ERROR = 2
EXIT_NOTHING_SCANNABLE = 3
EXIT_USAGE = 4
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it
# The scanning child exits with an error's code plus this, so that its failures never read as verdicts.
CHILD_FAILURE_OFFSET = 10
# The scanning child's exit code when it ran out of the memory it may use (Settings.scan_memory_bytes).
CHILD_OUT_OF_MEMORY = 2 * CHILD_FAILURE_OFFSET


class ClipAuditError(Exception):
    """Base class: a user-facing problem with a clear message (never a stack trace)."""

    exit_code = EXIT_ERROR


class UsageError(ClipAuditError):
    """The command line or settings are wrong."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A settings file or environment variable holds an invalid value."""


class NothingScannableError(ClipAuditError):
    """The input holds no checkpoint we can scan (e.g. only pickle weights)."""

    exit_code = EXIT_NOTHING_SCANNABLE


class PickleOnlyError(NothingScannableError):
    """Only .bin/.pt/.ckpt/.pth weights: we never unpickle."""


class UnknownArchitectureError(NothingScannableError):
    """The config names an architecture that is not CLIP-family."""


class CheckpointError(ClipAuditError):
    """A checkpoint exists but is broken: corrupt or truncated safetensors, shape mismatch."""


class CorruptCheckpointError(CheckpointError):
    """The safetensors file cannot be parsed (truncated, bad header, bad offsets)."""


class ShapeMismatchError(CheckpointError):
    """The weights do not fit the architecture the config describes."""


class AnchorError(ClipAuditError):
    """The anchor (clean base) model cannot be used with the suspect."""


class DeviceError(UsageError):
    """CUDA was requested but is not available."""


class ZooError(ClipAuditError):
    """A zoo recipe is invalid or a built model failed its sanity checks."""


class CaptionsDatasetError(UsageError):
    """A captions dataset (`clip-audit calibrate --captions`) lacks its file or holds something else."""


class UncalibratableBaseError(UsageError):
    """A registered base that the zoo's recipes cannot build variants of (`clip-audit calibrate`)."""


class CalibrationError(ClipAuditError):
    """A calibration run could not fit thresholds (e.g. no backdoor took, so there is nothing to separate)."""


class ScanFailed(ClipAuditError):
    """The scanning subprocess failed on this checkpoint (crashed, or exited without a record)."""


class ScanTimeoutError(ScanFailed):
    """The scanning subprocess ran past its wall-clock limit (Settings.scan_timeout_seconds) and was killed."""


class ScanOutOfMemoryError(ScanFailed):
    """The scanning subprocess needed more memory than it may use (Settings.scan_memory_bytes)."""


class HubError(ClipAuditError):
    """A Hub call failed in a way the caller should report (not retry)."""


class HubAuthError(HubError):
    """The Hub refused the token (401), or the token lacks permission for this call (403)."""


class HubNotFoundError(HubError):
    """The Hub has nothing at that address (a file at a revision, a discussion number): 404."""


class DiscussionsDisabledError(HubError):
    """The repo owner turned discussions (and so pull requests) off: the bot cannot post there."""


class HubUnavailableError(HubError):
    """The Hub could not be reached, or answered with a server error: worth retrying later."""


class RateLimitedError(HubError):
    """The Hub asked us to slow down; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SkipReason(str, enum.Enum):
    """Why a repo (at a commit) is not scanned; the value is the code stored and shown in reports."""

    PRIVATE = "private"
    GATED = "gated"
    NOT_FOUND = "not-found"              # gone, private or disabled by the time we looked
    REVISION_GONE = "revision-gone"      # the commit was force-pushed away or deleted
    PICKLE_ONLY = "pickle-only"
    NO_WEIGHTS = "no-weights"
    NO_CONFIG = "no-config"
    NO_TEXT_TOWER = "no-text-tower"
    CORRUPT = "corrupt-safetensors"
    OVERSIZED = "oversized"
    OPTED_OUT = "opted-out"

    @property
    def unreachable(self) -> bool:
        """The repo or commit cannot be read (gone, private, gated): this says nothing about its files."""
        return self in (SkipReason.PRIVATE, SkipReason.GATED, SkipReason.NOT_FOUND, SkipReason.REVISION_GONE)


class SkipRepo(ClipAuditError):
    """A repo is not scanned, for a recorded reason (gated, private, pickle-only, oversized)."""

    exit_code = EXIT_NOTHING_SCANNABLE

    def __init__(self, code: SkipReason, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        """The code and the detail, as shown to people ("oversized: the files total 3 GiB ...")."""
        return str(self)

    def for_named_repo(self, what: str, *, hint: str = "") -> ClipAuditError:
        """This skip as the error of a command a person named the repo in (`clip-audit scan owner/name`,
        `anchors add`): a repo or commit that cannot be read is a usage error, as a missing path is (`hint` says
        what may help, e.g. a token); corrupt weights an error, as in a local folder; the rest nothing
        scannable. `what` names the repo for the message."""
        if self.code.unreachable:
            return UsageError(f"cannot read {what}: {self.detail}{hint}")
        if self.code is SkipReason.CORRUPT:
            return CorruptCheckpointError(f"{what}: {self.detail}")
        return self


class StoreError(ClipAuditError):
    """The state database is unusable (bad schema version, locked too long)."""


class WebhookError(ClipAuditError):
    """A webhook payload is malformed or its secret does not match."""


class TemplateValueError(ClipAuditError, ValueError):
    """A post or page template printed a value it must never print (None): a bug, never shown to users."""
