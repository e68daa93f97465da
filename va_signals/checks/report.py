"""The `va-signals health` command: the health score and its dimensions, for people or machines."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from va_signals.catalog import default_catalog
from va_signals.db.health import load_health_inputs
from va_signals.db.location import database_url
from va_signals.db.pool import DatabaseUnavailableError, get_pool
from va_signals.resilience.health import HealthReport, compute_health

EXIT_OK = 0
EXIT_UNAVAILABLE = 1


def health_command(*, as_json: bool, console: Console, err_console: Console) -> int:
    """Compute the score now from the configured database and print it; 1 if unreachable."""
    try:
        with get_pool(database_url()).connection() as conn:
            inputs = load_health_inputs(conn, default_catalog(), datetime.now(UTC))
    except DatabaseUnavailableError as exc:
        err_console.print(f"[red]va-signals health: {exc}[/red]")
        return EXIT_UNAVAILABLE
    report = compute_health(inputs)
    if as_json:
        # Plain stdout: rich would wrap long lines and break the JSON.
        sys.stdout.write(json.dumps(report.as_dict(), sort_keys=True) + "\n")
    else:
        console.print(health_table(report))
        if not report.configured:
            for reason in report.reasons:
                console.print(f"[yellow]not configured: {reason}[/yellow]")
    return EXIT_OK


def health_table(report: HealthReport) -> Table:
    """The score, then one row per dimension with its weight and what cost it points."""
    state = "" if report.configured else " (configured: false)"
    table = Table(title=f"Health score {report.score:.1f}/100{state}")
    for column, justify in (("dimension", "left"), ("score", "right"), ("weight", "right")):
        table.add_column(column, justify=justify)
    table.add_column("detail", overflow="fold")
    weights = report.as_dict()["weights"]
    for dimension in report.dimensions:
        score = f"{dimension.score * 100:.1f}" if dimension.configured else "-"
        table.add_row(dimension.name, score, f"{weights[dimension.name]:g}", dimension.reason)
    return table
