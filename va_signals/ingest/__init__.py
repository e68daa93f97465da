"""Runs one source end to end: fetch its pages, store them, and keep its ledger and state."""

from va_signals.ingest.runner import SourceRunResult, record_skipped_run, run_source

__all__ = ["SourceRunResult", "record_skipped_run", "run_source"]
