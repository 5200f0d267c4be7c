"""Publishing scan results on the Hub: rendering Markdown posts safely and posting them once per (repo, commit)."""
