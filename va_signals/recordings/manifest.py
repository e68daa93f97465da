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
    """Every `*/manifest.yaml` under `root`, validated; a bad one is an error naming its file.

    Each response's body must be an existing file inside the manifest's own folder: a body such
    as `../../etc/passwd` or an absolute path is refused here, before anything is served.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"recordings folder not found: {root}")
    manifests = []
    for path in sorted(root.glob("*/manifest.yaml")):
        try:
            raw = _read_yaml(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: invalid recordings manifest: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(
                f"{path}: invalid recordings manifest: expected a mapping with `service` and "
                f"`responses`, found a YAML {type(raw).__name__}"
            )
        try:
            manifest = Manifest.model_validate({**raw, "folder": path.parent})
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid recordings manifest: {exc}") from None
        for index, entry in enumerate(manifest.responses):
            body_path(manifest, entry, manifest_file=path, index=index)
        manifests.append(manifest)
    return manifests


def body_path(
    manifest: Manifest,
    entry: RecordedResponse,
    *,
    manifest_file: Path | None = None,
    index: int | None = None,
) -> Path:
    """The file holding `entry`'s body, resolved; a ValueError when it lies outside the
    manifest's folder (`..`, an absolute path, a symlink leading out) or does not exist."""
    if manifest.folder is None:
        raise ValueError(f"manifest of {manifest.service} has no folder to read bodies from")
    folder = manifest.folder.resolve()
    where = manifest_file or manifest.folder / "manifest.yaml"
    which = f"response {index} " if index is not None else "response "
    which += f"({entry.method} {entry.url})"
    path = (folder / entry.body).resolve()
    if not path.is_relative_to(folder):
        raise ValueError(
            f"{where}: {which}: body {entry.body!r} is outside the recordings folder {folder}"
        )
    if not path.is_file():
        raise ValueError(f"{where}: {which}: body file {entry.body!r} does not exist in {folder}")
    return path


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
