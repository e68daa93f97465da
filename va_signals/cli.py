"""The `va-signals` command: run the daily job, record or parse responses, manage the schema."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from alembic.util import CommandError
from rich.console import Console
from rich.table import Table

from va_signals.cli_incidents import add_incidents_parser
from va_signals.db.location import database_url, redact, state_dir, stop_embedded

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2

_DAGSTER_YAML = """\
# Written by va-signals for local runs; production settings live in deploy/.
telemetry:
  enabled: false
run_retries:
  enabled: true
  max_retries: 2
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Great Expectations announces its temporary folders at INFO on every check run.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or EXIT_OK)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except BrokenPipeError:
        # `va-signals parse ... | head` closes the pipe early: not an error of ours.
        sys.stderr.close()
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="va-signals", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the daily_signals job once")
    run.add_argument("--replay", metavar="DIR", help="serve requests from a recordings folder")
    run.add_argument("--select", metavar="SOURCES", help="comma-separated source ids")
    run.add_argument("--max-pages", type=_positive_int, metavar="N", help="page budget per source")
    run.set_defaults(handler=_cmd_run)

    record = commands.add_parser("record", help="run the sources live and save what they fetch")
    record.add_argument("--out", required=True, metavar="DIR", help="recordings folder to write")
    record.add_argument("--select", metavar="SOURCES", help="comma-separated source ids")
    record.add_argument("--max-pages", type=_positive_int, default=1, metavar="N")
    record.set_defaults(handler=_cmd_record)

    parse = commands.add_parser("parse", help="parse a saved response body of one source")
    parse.add_argument("--source", required=True, metavar="ID")
    parse.add_argument("file", type=Path)
    parse.set_defaults(handler=_cmd_parse)

    dev = commands.add_parser("dev", help="start the Dagster UI on the local instance")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(handler=_cmd_dev)

    add_incidents_parser(commands)

    health = commands.add_parser("health", help="print the health score and its dimensions")
    health.add_argument("--json", action="store_true", help="print one JSON object instead")
    health.set_defaults(handler=_cmd_health)

    db = commands.add_parser("db", help="schema migrations and the embedded server")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="migrate to the newest revision").set_defaults(
        handler=_cmd_db_upgrade
    )
    downgrade = db_commands.add_parser("downgrade", help="migrate down to REV (or 'base')")
    downgrade.add_argument("revision", metavar="REV")
    downgrade.set_defaults(handler=_cmd_db_downgrade)
    db_commands.add_parser("current", help="print the current revision").set_defaults(
        handler=_cmd_db_current
    )
    db_commands.add_parser("url", help="print the database URL (password hidden)").set_defaults(
        handler=_cmd_db_url
    )
    db_commands.add_parser("stop-embedded", help="stop the embedded server").set_defaults(
        handler=_cmd_db_stop
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def prepare_dagster_home() -> Path:
    """Use `DAGSTER_HOME`, or a persistent instance under `.va_signals/` so `make dev` sees runs."""
    home = Path(os.environ.get("DAGSTER_HOME") or state_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _cmd_dev(args: argparse.Namespace) -> int:
    home = prepare_dagster_home()
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    console.print(f"Dagster UI on http://127.0.0.1:{args.port} (instance {home})")
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(args.port)]
    os.execv(command[0], command)
    return EXIT_OK  # not reached: execv replaces this process


def _cmd_run(args: argparse.Namespace) -> int:
    return _run_job(args, replay=args.replay, record=None)


def _cmd_record(args: argparse.Namespace) -> int:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return _run_job(args, replay=None, record=args.out)


def _run_job(args: argparse.Namespace, *, replay: str | None, record: str | None) -> int:
    from va_signals.launch import JobRunError, run_daily_signals

    if replay and not Path(replay).is_dir():
        err_console.print(f"[red]--replay: no such folder: {replay}[/red]")
        return EXIT_USAGE
    selected = [name.strip() for name in (args.select or "").split(",") if name.strip()]
    if args.select is not None and not selected:
        # An empty selection must not quietly mean "every source".
        err_console.print(f"[red]--select: no source ids in {args.select!r}[/red]")
        return EXIT_USAGE
    prepare_dagster_home()
    handler = _ProgressHandler()
    progress = logging.getLogger("va_signals.progress")
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    progress.propagate = False
    try:
        # Source failures are reported in the table; Dagster's console shows only errors.
        outcome = run_daily_signals(
            replay_dir=replay,
            record_dir=record,
            select=selected,
            max_pages=args.max_pages,
            log_level="ERROR",
        )
    except JobRunError as exc:
        err_console.print(f"[red]va-signals: {exc}[/red]")
        return EXIT_USAGE if exc.usage else EXIT_JOB_FAILED
    finally:
        progress.removeHandler(handler)
    console.print(_runs_table(outcome.source_runs))
    _print_errors(outcome.source_runs)
    ok = sum(1 for row in outcome.source_runs if row["status"] in ("SUCCESS", "NO_DATA"))
    console.print(
        f"run {outcome.run_id} {'finished' if outcome.success else 'FAILED'}: "
        f"{ok} of {len(outcome.source_runs)} sources ok, "
        f"{outcome.signals_written} signals written, "
        f"{outcome.documents_total} documents in the database",
        soft_wrap=True,
    )
    if not outcome.success:
        for message in outcome.step_failures:
            err_console.print(f"[red]{message}[/red]")
        return EXIT_JOB_FAILED
    return EXIT_OK


class _ProgressHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        result = getattr(record, "source_run", None)
        if result is None:
            return
        colour = "green" if result.ok else "red"
        detail = (
            f"{result.pages} pages, {result.counts.new} new, {result.counts.updated} updated, "
            f"{result.counts.unchanged} unchanged"
        )
        if result.error_class:
            detail += f" ({result.error_class})"
        console.print(
            f"  [{colour}]{result.status.value:<8}[/{colour}] {result.source_id}  {detail}"
        )


def _runs_table(rows: list[dict]) -> Table:
    table = Table(title="Sources in this run", title_justify="left")
    table.add_column("source", no_wrap=True)
    table.add_column("status", no_wrap=True, min_width=8)
    for column in ("pages", "new", "updated", "same", "ms"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    # Narrow terminals get the error classes in the lines printed under the table instead.
    wide = console.width >= 110
    if wide:
        table.add_column("error", overflow="ellipsis", no_wrap=True)
    for row in rows:
        status = row["status"] + ("*" if row["truncated"] else "")
        table.add_row(
            row["source_id"],
            status,
            str(row["pages"]),
            str(row["records_new"]),
            str(row["records_updated"]),
            str(row["records_unchanged"]),
            str(row["duration_ms"] or 0),
            *([row["error_class"] or ""] if wide else []),
        )
    if any(row["truncated"] for row in rows):
        table.caption = "* stopped at its page budget; the next run resumes where it stopped"
    return table


def _print_errors(rows: list[dict]) -> None:
    failed = [row for row in rows if row["error_message"]]
    for row in failed:
        console.print(f"[red]{row['error_class']}[/red] {row['error_message']}", soft_wrap=True)


def _cmd_parse(args: argparse.Namespace) -> int:
    from va_signals.catalog import default_catalog
    from va_signals.sources import build_adapter
    from va_signals.sources.base import SourceError

    catalog = default_catalog()
    try:
        source = catalog.source(args.source)
    except KeyError as exc:
        err_console.print(f"[red]{exc.args[0]}[/red]")
        return EXIT_USAGE
    adapter = build_adapter(source, catalog.service(source.service))
    try:
        page = adapter.parse(_read_body(args.file))
    except OSError as exc:
        err_console.print(f"[red]cannot read {args.file}: {exc}[/red]")
        return EXIT_USAGE
    except SourceError as exc:
        err_console.print(f"[red]{args.file}: {exc}[/red]")
        return EXIT_JOB_FAILED
    for record in page.records:
        sys.stdout.write(record.model_dump_json() + "\n")
    if page.next_cursor:
        err_console.print(f"next page: {page.next_cursor}", soft_wrap=True)
    return EXIT_OK


def _cmd_health(args: argparse.Namespace) -> int:
    from va_signals.checks.report import health_command

    return health_command(as_json=args.json, console=console, err_console=err_console)


# A saved response larger than this is not a response body; reading it would only exhaust memory.
MAX_PARSE_BYTES = 256 * 1024 * 1024


def _read_body(path: Path) -> bytes:
    if not path.is_file():
        raise OSError(f"{path} is not a regular file")
    size = path.stat().st_size
    if size > MAX_PARSE_BYTES:
        raise OSError(f"{path} is {size} bytes, more than the {MAX_PARSE_BYTES} a body may have")
    return path.read_bytes()


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from va_signals.db import migrate

    url = database_url()
    migrate.upgrade(url)
    console.print(f"schema at {migrate.current_revision(url)} on {redact(url)}")
    return EXIT_OK


def _cmd_db_downgrade(args: argparse.Namespace) -> int:
    from va_signals.db import migrate

    url = database_url()
    try:
        migrate.downgrade(url, args.revision)
    except CommandError as exc:
        err_console.print(f"[red]db downgrade {args.revision}: {exc}[/red]")
        return EXIT_USAGE
    console.print(f"schema at {migrate.current_revision(url) or 'base'} on {redact(url)}")
    return EXIT_OK


def _cmd_db_current(args: argparse.Namespace) -> int:
    from va_signals.db import migrate

    revision = migrate.current_revision(database_url())
    console.print(revision or "base (empty database)")
    return EXIT_OK


def _cmd_db_url(args: argparse.Namespace) -> int:
    console.print(redact(database_url()))
    return EXIT_OK


def _cmd_db_stop(args: argparse.Namespace) -> int:
    console.print("stopped" if stop_embedded() else "no embedded server data found")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
