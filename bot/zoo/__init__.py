"""The zoo: tiny but genuinely trained CLIP-family models, clean, backdoored and benign."""
