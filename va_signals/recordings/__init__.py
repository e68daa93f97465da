"""Recorded upstream responses: replay them through httpx offline, or record new ones."""

from va_signals.recordings.manifest import Manifest, RecordedResponse, load_manifests
from va_signals.recordings.record import (
    MAX_RECORDED_BYTES,
    RecordingFailed,
    RecordingTooLarge,
    RecordingTransport,
)
from va_signals.recordings.replay import ReplayTransport

__all__ = [
    "MAX_RECORDED_BYTES",
    "Manifest",
    "RecordedResponse",
    "RecordingFailed",
    "RecordingTooLarge",
    "RecordingTransport",
    "ReplayTransport",
    "load_manifests",
]
