"""Answering maintainers who mention the bot: command parsing, the webhook receiver, polling, and dispatch."""
