"""Trusted anchors: the clean bases a suspect is compared with, chosen from a reviewed registry by the weights.

An uploader writes the model card, so nothing it says picks the anchor: the registry (registry.json, reviewed
like code, plus the operator's own file) lists the bases people fine-tune, with their architecture
fingerprint; the suspect's weights pick the nearest of those with its fingerprint (selection.py), and the
card's claim only becomes a finding when the weights disagree with it.
"""
