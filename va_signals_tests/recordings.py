"""Where the shared real recordings live, and the rule for tests that need them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_RECORDINGS = Path(
    os.environ.get("VA_SIGNALS_RECORDINGS", PROJECT_ROOT.parent / "shared" / "recordings")
)
EXAMPLE_RECORDINGS = PROJECT_ROOT / "examples" / "recordings"


def shared_recordings() -> Path:
    """The shared recordings folder; fails (CI) or skips (elsewhere) when it is absent."""
    if (SHARED_RECORDINGS / "README.md").is_file():
        return SHARED_RECORDINGS
    message = f"real recordings not found at {SHARED_RECORDINGS}"
    if os.environ.get("VA_SIGNALS_REQUIRE_RECORDINGS") == "1":
        pytest.fail(message + " and VA_SIGNALS_REQUIRE_RECORDINGS=1")
    pytest.skip(message)


def recording(relative: str) -> bytes:
    """Bytes of one recorded body, e.g. recording('lda/filings-list.json')."""
    return (shared_recordings() / relative).read_bytes()
