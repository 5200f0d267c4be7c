"""The job pipeline's isolation of untrusted weights from credentials."""

from __future__ import annotations


def test_scanning_child_gets_no_secrets():
    from bot.scanning.isolation import child_environment

    env = child_environment({"HF_TOKEN": "hf_x", "CLIP_AUDIT_TOKEN": "y", "CLIP_AUDIT_WEBHOOK_SECRET": "z",
                             "HUGGING_FACE_HUB_TOKEN": "w", "MY_GITHUB_TOKEN": "v", "PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin", "HF_HUB_OFFLINE": "1"}
