"""The one boundary to the Hugging Face Hub: the typed client, repo recognition, watching and pinned downloads."""
