"""Augmentation-parameterized families: ``space`` (dimensions, spaces and family specs as
plain JSON; no image code) and ``transforms`` (the albumentations transforms that apply
a family's spec to images)."""
