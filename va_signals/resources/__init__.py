"""Dagster resources: the database pool and the HTTP client every source shares."""

from va_signals.resources.database import DatabaseResource
from va_signals.resources.http import HttpResource

__all__ = ["DatabaseResource", "HttpResource"]
