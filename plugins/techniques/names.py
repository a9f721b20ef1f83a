"""Names of built-in techniques that their helper modules use too (in messages and cache folders).

Kept here, without torch, so that a technique's registration and the heavier modules it imports when
a cell is built take them from one place instead of from each other.
"""
from __future__ import annotations

PRETRAINED = "pretrained-resnet"
FEATURE_LOSS = "feature-loss"
