"""Loading CLIP-family text encoders from safetensors checkpoints."""
