"""The `manifest.yaml` format of a recordings folder: one per service, request pattern to body."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class RecordedResponse(BaseModel):
    """One recorded answer: which requests it matches and the file holding its body."""

    model_config = ConfigDict(extra="allow", frozen=True)

    method: str = "GET"
    url: str = Field(pattern=r"^https?://[^/]+")
    status: int = Field(ge=100, le=599)
    content_type: str = "application/json"
    body: str
    headers: dict[str, str] = Field(default_factory=dict)
    note: str | None = None

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc.lower()

    @property
    def segments(self) -> list[str]:
        return _segments(urlsplit(self.url).path)

    @property
    def wildcards(self) -> int:
        return sum(1 for segment in self.segments if segment == "*")

    def matches(self, method: str, host: str, path: str) -> bool:
        """Method, host and path must match; `*` stands for exactly one path segment."""
        if method.upper() != self.method or host.lower() != self.host:
            return False
        wanted = _segments(path)
        if len(wanted) != len(self.segments):
            return False
        return all(p == "*" or p == w for p, w in zip(self.segments, wanted, strict=True))


class Manifest(BaseModel):
    """A service's folder of recordings."""

    model_config = ConfigDict(extra="allow", frozen=True)

    service: str
    responses: list[RecordedResponse] = Field(default_factory=list)
    folder: Path | None = None


def load_manifests(root: Path) -> list[Manifest]:
    """Every `*/manifest.yaml` under `root`, validated; a bad one is an error naming its file."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"recordings folder not found: {root}")
    manifests = []
    for path in sorted(root.glob("*/manifest.yaml")):
        try:
            raw = _read_yaml(path.read_text(encoding="utf-8")) or {}
            manifest = Manifest.model_validate({**raw, "folder": path.parent})
        except (yaml.YAMLError, ValidationError) as exc:
            raise ValueError(f"{path}: invalid recordings manifest: {exc}") from None
        manifests.append(manifest)
    return manifests


def _read_yaml(text: str) -> object:
    """Parse a manifest, tolerating free-text `note:` values that contain a colon.

    Notes are prose written by whoever recorded the responses; a colon inside one is not
    valid YAML, but it should not make every response of that service unreplayable.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        quoted = _NOTE_LINE.sub(lambda m: f"{m[1]}note: {json.dumps(m[2])}", text)
        return yaml.safe_load(quoted)


_NOTE_LINE = re.compile(r"^(\s*)note: (?![\"'>|])(.*)$", re.MULTILINE)


def _segments(path: str) -> list[str]:
    # Trailing slashes are significant to some APIs (LDA), so keep an empty last segment.
    parts = path.split("/")
    return parts[1:] if parts and parts[0] == "" else parts
