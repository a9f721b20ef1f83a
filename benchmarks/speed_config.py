"""What the speed benchmarks run, and the environment variables that make a run shorter.

Every loop trains one epoch of ``STEPS`` steps of ``STUDY_BATCH_SIZE`` images: the training split is
sized to hold exactly that many images, so all three loops see the same number of images.
"""
from __future__ import annotations

import os

from aeframe.contract.protocol import STUDY_BATCH_SIZE


def _positive_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    value = int(text)
    if value < 1:
        raise ValueError(f"{name}={text}: give a positive whole number")
    return value


# Training steps per loop and round (one epoch). 32 steps of 128 is shapes[train=4096].
STEPS = _positive_int("AEFRAME_BENCH_STEPS", 32)
# Timed rounds per technique, after one untimed warm-up round.
ROUNDS = _positive_int("AEFRAME_BENCH_ROUNDS", 3)
WARMUP_ROUNDS = 1
# Worker processes of the study-style DataLoader. 0 by default: on a 2-core machine workers would
# compete with the training threads, and a slower (c) would flatter aeframe's a/c ratio.
WORKERS = int(os.environ.get("AEFRAME_BENCH_WORKERS", "0") or 0)
DEVICE = os.environ.get("AEFRAME_BENCH_DEVICE", "auto") or "auto"
# The numeric precision of all three loops; "auto" is what `aeframe bench` uses on this device by
# default (with its channels_last default), so the ratios are those of a default run.
PRECISION = os.environ.get("AEFRAME_BENCH_PRECISION", "auto") or "auto"

TEST_IMAGES = 256
DATASET = f"shapes[train={STEPS * STUDY_BATCH_SIZE},test={TEST_IMAGES}]"

# The goal of issue 5: aeframe's loop within 5 % of a minimal hand-written loop.
GOAL_VS_PLAIN = 0.95
# The goal of issue 12: aeframe's default settings within 5 % of the best setting measured here.
GOAL_DEFAULT_VS_BEST = 0.95

# Every built-in technique at its defaults (those needing ImageNet weights are skipped offline, with
# the reason), plus the offline forms of the two that need them.
OFFLINE_FORMS = ("pretrained-resnet[weights=shapes]", "feature-loss[net=random]")


def technique_texts(registered: list[str]) -> list[str]:
    return sorted(registered) + [form for form in OFFLINE_FORMS if form.split("[")[0] in registered]
