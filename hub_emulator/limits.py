"""How much the emulator reads of one request, one home for each cap.

Bodies are counted while they are read (a chunked body declares no length), so nothing past a cap is ever held
in memory; the request is answered 413 and its connection closed. Routes that carry file contents (commits,
whose NDJSON holds the files base64-encoded, and the admin routes that seed repos) get the upload cap; every
other route reads a small JSON document.
"""

from __future__ import annotations

MIB = 1024 * 1024
# The tiny zoo's checkpoints are ~30 MB (~40 MB as base64), a real CLIP text tower ~500 MB; the emulator is not
# meant for multi-GB checkpoints, which the real Hub would take through LFS instead of an inline commit.
MAX_UPLOAD_BODY_BYTES = 1024 * MIB
# A discussion comment, a paths-info list, an admin fault spec: the Hub caps comments far below this.
MAX_JSON_BODY_BYTES = 1 * MIB
# Longest chunk-size line of a chunked body ("1000;ext=...\r\n"); anything longer is a malformed request.
MAX_CHUNK_LINE_BYTES = 1024
