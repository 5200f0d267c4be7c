"""clip-audit-bot: audits CLIP-family checkpoints for hidden textual backdoors."""

__version__ = "0.1.0"
