"""`va-signals incidents`: open and recent incidents, or the ones open at a past moment."""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime, timedelta

from rich.table import Table

DEFAULT_RECENT_DAYS = 7.0


def add_incidents_parser(commands: argparse._SubParsersAction) -> None:
    """Register the `incidents` subcommand on the CLI's subparsers."""
    incidents = commands.add_parser("incidents", help="list open and recent incidents")
    incidents.add_argument(
        "--at",
        metavar="TIME",
        help="list the incidents open at TIME, e.g. 2026-11-24T02:00 "
        "(local time unless TIME carries an offset)",
    )
    incidents.add_argument(
        "--days",
        type=_days,
        default=DEFAULT_RECENT_DAYS,
        metavar="N",
        help=f"with no --at: also list incidents resolved in the last N days "
        f"(default {DEFAULT_RECENT_DAYS:g})",
    )
    incidents.add_argument("--json", action="store_true", help="print JSON, one array")
    incidents.set_defaults(handler=run_incidents_command)


def parse_moment(text: str) -> datetime:
    """An ISO date-time; without an offset it is read in this machine's local time zone."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo is not None else moment.astimezone()


def run_incidents_command(args: argparse.Namespace) -> int:
    # Imported here: the CLI module registers this command, so it is fully loaded by now.
    from va_signals.cli import EXIT_OK, EXIT_USAGE, console, err_console
    from va_signals.db.incidents import incidents_open_at, open_and_recent_incidents
    from va_signals.db.location import database_url
    from va_signals.resources import DatabaseResource

    try:
        at = parse_moment(args.at) if args.at else None
    except ValueError:
        err_console.print(f"[red]--at: not an ISO date-time: {args.at!r}[/red]")
        return EXIT_USAGE
    database = DatabaseResource(url=database_url())
    database.ensure_schema()
    with database.connection() as conn:
        if at is not None:
            rows = incidents_open_at(conn, at)
        else:
            rows = open_and_recent_incidents(conn, datetime.now(UTC) - timedelta(days=args.days))

    if args.json:
        sys.stdout.write(json.dumps([_as_json(row) for row in rows], indent=2) + "\n")
        return EXIT_OK
    title = f"open at {at:%Y-%m-%d %H:%M %Z}" if at else "open, or resolved lately"
    if not rows:
        console.print(f"no incidents {title}")
        return EXIT_OK
    zone = datetime.now().astimezone().tzname()
    console.print(_table(rows, f"Incidents {title} (times in {zone})"))
    # Source lists are long; they go under the table so it keeps to 80 columns.
    for row in rows:
        console.print(f"#{row['id']} sources: {', '.join(row['sources']) or '-'}", soft_wrap=True)
    return EXIT_OK


def _as_json(row: dict) -> dict:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in row.items()
    }


def _table(rows: list[dict], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("id", justify="right", no_wrap=True)
    for column in ("tier", "root cause", "opened", "resolved"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["tier"],
            row["root_cause"],
            _local(row["opened_at"]),
            _local(row["resolved_at"]) if row["resolved_at"] else "open",
        )
    return table


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _days(text: str) -> float:
    """A finite, non-negative number of days (timedelta overflows on inf and huge values)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= 36_500:
        raise argparse.ArgumentTypeError(f"must be between 0 and 36500 days, got {text!r}")
    return value
