"""AMDET: model-level detection of textual backdoors in CLIP-family text encoders."""
