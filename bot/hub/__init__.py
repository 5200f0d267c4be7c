"""Talking to the Hugging Face Hub: client helpers and a local emulator for offline work."""
