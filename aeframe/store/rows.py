"""Store rows to records and back, refusing rows that cannot stand for a record.

A store is an ordinary SQLite file that people open, query and sometimes edit by hand. A row
that no longer reads (a JSON column cut short, a config that is not an object, a status aeframe
does not know) is rejected with a one-line reason, so the reader can leave that row out and keep
the others.
"""
from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from aeframe.cells.record import STATUSES, CellConfig, CellRecord, CellStats
from aeframe.cells.samples import Samples

if TYPE_CHECKING:
    import torch


class BadRow(ValueError):
    """A stored row that cannot be read as a record; the message says what is wrong."""


def attempt_row(record: CellRecord) -> tuple:
    """The values of an ``attempts`` row (columns as in :data:`aeframe.store.schema.ATTEMPT_COLUMNS`)."""
    config = record.config
    return (
        record.key,
        record.status,
        config.label,
        config.dataset.name,
        config.seed,
        json_text(config.to_json(), sort_keys=True),
        record.error,
        json_text(record.metrics),
        json_text(record.stats.to_json()),
        json_text(record.curve),
        record.started_at,
        record.finished_at,
    )


def json_text(value: Any, sort_keys: bool = False) -> str:
    """``value`` as JSON that SQLite's JSON functions accept: NaN and the infinities, which Python's json
    would write as the non-JSON ``NaN`` / ``Infinity``, become null (read back as None)."""
    return json.dumps(_finite(value), sort_keys=sort_keys, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def record_of(row: tuple) -> CellRecord:
    """The record a row holds; :class:`BadRow` when it cannot hold one."""
    key, status, _label, _dataset, _seed, config, error, metrics, stats, curve, started, finished = row
    if status not in STATUSES:
        raise BadRow(f"unknown status {status!r} (known: {', '.join(STATUSES)})")
    config = _json(config, "config", dict, "an object")
    metrics = _json(metrics, "metrics", dict, "an object")
    bad = [name for name, value in metrics.items() if not _number(value)]
    if bad:
        raise BadRow(f"metrics {', '.join(map(repr, bad))} are not numbers")
    stats = _json(stats, "stats", dict, "an object")
    curve = _json(curve, "curve", list, "a list")
    if not all(isinstance(point, dict) for point in curve):
        raise BadRow("curve is not a list of objects")
    if not isinstance(error, (str, type(None))) or not all(isinstance(t, str) for t in (started, finished)):
        raise BadRow("error, started_at or finished_at is not text")
    try:
        return CellRecord(key=key, config=CellConfig.from_json(config, status), status=status, error=error,
                          metrics=metrics, stats=CellStats.from_json(stats), curve=curve, started_at=started, finished_at=finished)
    except (TypeError, ValueError, AttributeError) as e:
        raise BadRow(f"config does not describe a cell ({e})") from None


def _json(text: Any, column: str, kind: type, described: str) -> Any:
    if not isinstance(text, str):
        raise BadRow(f"{column} is not text")
    try:
        value = json.loads(text)
    except ValueError as e:
        raise BadRow(f"{column} is not valid JSON ({e})") from None
    if not isinstance(value, kind):
        raise BadRow(f"{column} is not {described} but {type(value).__name__} {text[:40]!r}")
    return value


def _number(value: Any) -> bool:
    # None (null: how a non-finite number is written) counts, and so do NaN and the infinities older stores hold.
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def samples_row(key: str, samples: Samples) -> tuple:
    """The values of a ``samples`` row."""
    def raw(images: torch.Tensor) -> bytes:
        return images.contiguous().numpy().tobytes()

    shape = list(samples.originals.shape)
    return key, json.dumps(samples.indices), json.dumps(shape), raw(samples.originals), raw(samples.reconstructions)


def check_samples_row(row: tuple) -> tuple[list[int], list[int]]:
    """The indices and shape of a ``samples`` row whose sizes agree; :class:`BadRow` otherwise.

    Without torch: ``aeframe merge`` copies such rows as they are.
    """
    _key, indices, shape, originals, reconstructions = row
    try:
        indices, shape = json.loads(indices), json.loads(shape)
        size = math.prod(shape)
    except (TypeError, ValueError) as e:
        raise BadRow(f"its indices or shape are not valid ({e})") from None
    if not (isinstance(originals, bytes) and isinstance(reconstructions, bytes)
            and len(originals) == len(reconstructions) == size):
        raise BadRow(f"its images do not have the {size} bytes its shape {shape} needs")
    return indices, shape


def samples_of(row: tuple) -> Samples:
    """The sample images a ``samples`` row holds; :class:`BadRow` when its sizes do not agree."""
    indices, shape = check_samples_row(row)
    _key, _indices, _shape, originals, reconstructions = row

    # Only pictures read samples, so only they pay for importing torch.
    import torch

    def images(raw: bytes) -> torch.Tensor:
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(shape)

    return Samples(indices, images(originals), images(reconstructions))
