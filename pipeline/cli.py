"""Command line: parses arguments, calls the stages, prints, and chooses the exit code. No logic of its own.

Exit codes (DESIGN.md): 0 every row created or already created (dry run: every row valid); 1 some rows ended
in another status; 2 the run could not start (usage, input, mapping, settings); 3 the run was stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import __version__
from pipeline.console import guard_stdout, one_line
from pipeline.errors import JobImportError, UsageError

if TYPE_CHECKING:
    from pipeline.api import ImportResult

EXIT_MEANING = {
    0: "every row created or already created",
    1: "some rows need attention: see corrections and results",
    2: "the run could not start",
    3: "the run was stopped before every row was sent; run again to continue",
}


STATE_DIR_HELP = "where ledgers live (default: $JOBIMPORT_HOME, else the user's state folder)"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.partition(" ")[2]  # "jobimport run" → "run"; main() prints the "jobimport: " prefix
        raise UsageError(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text}")
    return value


def _age(text: str) -> float:
    """--refdata-max-age: seconds, or with a unit: 90s, 30m, 2h."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        value = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or a duration like 30m or 2h, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a duration >= 0, got {text!r}")
    return value


def _add_tenant_arguments(parser: argparse.ArgumentParser, run: bool) -> None:
    """--online / --no-preflight and --refdata-max-age: the tenant's reference data (pipeline/tenant/refdata.py)."""
    if run:
        parser.add_argument(
            "--no-preflight",
            action="store_true",
            help="do not check rows against the tenant's job types, contacts and persons before sending",
        )
    parser.add_argument(
        "--online",
        action="store_true",
        help="check rows against the tenant's reference data (fetched, or cached): what the API would refuse",
    )
    parser.add_argument(
        "--refdata-max-age",
        type=_age,
        default=3600.0,
        metavar="AGE",
        help="reuse cached reference data younger than this (seconds, or 30m, 2h; default 1h), else fetch it",
    )


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="the .csv/.tsv/.txt/.xlsx/.xlsm/.xls/.ods file of job rows")
    parser.add_argument("--mapping", "-m", type=Path, required=True, help="the mapping file (mappings/*.toml)")
    parser.add_argument("--report-dir", type=Path, default=Path("reports"), help="where runs write reports")
    parser.add_argument("--sheet", help="Excel sheet to read (default: the mapping's, else the first with data)")
    parser.add_argument("--header-row", type=_positive, help="row holding the headers (default: mapping's, else 1)")
    parser.add_argument("--encoding", help="CSV encoding when it is not UTF-8 (a BOM always wins)")
    parser.add_argument("--delimiter", help="CSV delimiter (default: sniffed among , ; tab |)")


LEDGER_HELP = (
    "ledger file, or a shared ledger postgresql://user@host/database (default: $JOBIMPORT_LEDGER_URL, else the "
    "tenant's own file in the state folder)"
)
LEDGERS_HELP = "ledger file or postgresql:// URL (default: $JOBIMPORT_LEDGER_URL and every tenant's file)"


def _ledger(value: str) -> Path | str:
    from pipeline.submit.ledger import as_target

    return as_target(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jobimport", description="Import job rows from Excel/CSV files into BigChange.")
    parser.add_argument("--version", action="version", version=f"jobimport {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback for unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="import a file (or --dry-run: validate and write payloads only)")
    _add_input_arguments(run)
    run.add_argument("--dry-run", action="store_true", help="validate and write payloads; send nothing")
    run.add_argument("--env-file", type=Path, help="a .env-style file with the BIGCHANGE_* settings")
    run.add_argument("--ledger", type=_ledger, help=LEDGER_HELP)
    run.add_argument("--state-dir", type=Path, help=STATE_DIR_HELP)
    run.add_argument(
        "--no-lookup",
        action="store_true",
        help="do not look new references up in BigChange before sending (a first load into an empty tenant: the "
        "ledger alone then protects against duplicates)",
    )
    run.add_argument("--max-concurrency", type=_positive, default=32, help="upper bound of requests in flight")
    run.add_argument("--max-attempts", type=_positive, default=6, help="sends per row for retryable failures")
    run.add_argument(
        "--timeout", type=_positive, default=30, help="seconds to wait for an answer before looking the job up"
    )
    run.add_argument("--resend-uncertain", action="store_true", help="send again rows whose earlier outcome is unknown")
    run.add_argument(
        "--resend-rejected",
        action="store_true",
        help="send again rows the API refused earlier even if unchanged (e.g. a job type was fixed in BigChange)",
    )
    run.add_argument("--transport", choices=("aiohttp", "httpx"), default="aiohttp", help=argparse.SUPPRESS)
    _add_tenant_arguments(run, run=True)

    check = sub.add_parser("validate", help="check a file against a mapping, write the report; send nothing")
    _add_input_arguments(check)
    check.add_argument("--env-file", type=Path, help="a .env-style file with the BIGCHANGE_* settings (--online)")
    _add_tenant_arguments(check, run=False)

    tenant = sub.add_parser("tenant", help="the tenant's reference data (job types, contacts, persons)")
    tenant_sub = tenant.add_subparsers(dest="tenant_command", required=True, parser_class=_Parser)
    pull = tenant_sub.add_parser("pull", help="fetch and cache the tenant's job types, contacts and persons")
    pull.add_argument("input", type=Path, nargs="?", help="a job file: fetch the persons of the contacts it uses")
    pull.add_argument("--mapping", "-m", type=Path, help="the mapping of INPUT (to find its contacts)")
    pull.add_argument("--all-persons", action="store_true", help="fetch the persons of every contact")
    pull.add_argument("--export", type=Path, metavar="DIR", help="also write job_types.csv, contacts.csv, persons.csv")
    pull.add_argument("--env-file", type=Path, help="a .env-style file with the BIGCHANGE_* settings")
    pull.add_argument("--sheet", help="Excel sheet of INPUT")
    pull.add_argument("--state-dir", type=Path, help="where caches live (default: $JOBIMPORT_HOME, else the user's)")

    draft = sub.add_parser("init-mapping", help="draft a mapping file from a job file's headers and contents")
    draft.add_argument("input", type=Path, help="the .csv/.xlsx/… file of job rows")
    draft.add_argument("--output", "-o", type=Path, help="where to write the draft (default: print it)")
    draft.add_argument("--online", action="store_true", help="compare values with the tenant's reference data")
    draft.add_argument("--env-file", type=Path, help="a .env-style file with the BIGCHANGE_* settings (--online)")
    draft.add_argument("--sheet", help="Excel sheet to read")
    draft.add_argument("--header-row", type=_positive, help="row holding the headers (default 1)")
    draft.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    draft.add_argument("--state-dir", type=Path, help="where caches live (--online; default: $JOBIMPORT_HOME)")

    sandbox = sub.add_parser("sandbox", help="run the local BigChange API sandbox in the foreground")
    from pipeline.sandbox.config import add_sandbox_arguments

    add_sandbox_arguments(sandbox)

    demo = sub.add_parser("demo", help="start the sandbox, import the bundled sample into it, stop it")
    demo.add_argument("--report-dir", type=Path, default=Path("reports/demo"), help="where the demo writes")

    report = sub.add_parser("report", help="rebuild every report of a past run from the ledger")
    report.add_argument("run_id")
    report.add_argument("--report-dir", type=Path, default=Path("reports"), help="where the rebuilt reports go")
    report.add_argument("--ledger", type=_ledger, help=LEDGERS_HELP)
    report.add_argument("--state-dir", type=Path, help=STATE_DIR_HELP)
    report.add_argument("--env-file", type=Path, help="a .env-style file (its JOBIMPORT_HOME names the state folder)")

    drop = sub.add_parser("drop", help="import the complete files that land in a folder (a pass, or --watch)")
    drop.add_argument("folder", type=Path, help="the folder files are dropped into")
    drop.add_argument(
        "--mapping",
        "-m",
        action="append",
        required=True,
        metavar="[PATTERN=]FILE",
        help="the mapping; repeat as 'jobs_*.csv=mappings/jobs.toml' to route files by name (first match wins)",
    )
    drop.add_argument("--watch", action="store_true", help="keep running and take files as they settle")
    drop.add_argument("--settle", type=_seconds, default=60.0, help="seconds a file must stay unchanged (60)")
    drop.add_argument("--ready-marker", metavar="SUFFIX", help="take NAME only once NAME+SUFFIX exists (e.g. .ready)")
    drop.add_argument("--report-dir", type=Path, help="where runs write reports (default: FOLDER/reports)")
    drop.add_argument("--env-file", type=Path, help="a .env-style file with the BIGCHANGE_* settings")
    drop.add_argument("--state-dir", type=Path, help=STATE_DIR_HELP)
    drop.add_argument(
        "--notify-webhook",
        metavar="URL",
        help="POST a JSON summary of files needing attention (default: $JOBIMPORT_NOTIFY_WEBHOOK)",
    )
    drop.add_argument("--notify-command", metavar="CMD", help="run CMD with the same JSON on stdin")
    drop.add_argument("--notify-all", action="store_true", help="notify about every file, done ones too")
    drop.add_argument("--keep-days", type=_positive, help="remove done/ day folders (and their reports) older than N")
    drop.add_argument("--rescan", type=_seconds, default=30.0, help="--watch: look at the whole folder this often")
    drop.add_argument("--max-concurrency", type=_positive, default=32, help="upper bound of requests in flight")
    drop.add_argument("--max-attempts", type=_positive, default=6, help="sends per row for retryable failures")
    drop.add_argument("--timeout", type=_positive, default=30, help="seconds to wait for an answer")

    status = sub.add_parser(
        "status", help="list recent runs and drop passes with their counts; with FILE, that file's sign-off"
    )
    status.add_argument(
        "file",
        nargs="?",
        type=Path,
        help="an original file or any of its corrections files: one line per original row across every round",
    )
    status.add_argument("--report-dir", type=Path, default=Path("reports"), help="also list runs of older ledgers here")
    status.add_argument("--ledger", type=_ledger, help=LEDGERS_HELP)
    status.add_argument("--state-dir", type=Path, help=STATE_DIR_HELP)
    status.add_argument("--env-file", type=Path, help="a .env-style file (its JOBIMPORT_HOME names the state folder)")
    status.add_argument("--limit", type=_positive, default=10)
    status.add_argument("--all", action="store_true", help="also list runs that never started")

    ledger = sub.add_parser(
        "ledger", help="where the ledger of the configured tenant is; adopt an older one; move one into a shared one"
    )
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True, parser_class=_Parser)
    where = ledger_sub.add_parser("path", help="print the ledger file of the tenant the settings name")
    adopt = ledger_sub.add_parser(
        "adopt", help="make a ledger an earlier version left in a report folder the configured tenant's ledger"
    )
    adopt.add_argument("file", type=Path, help="the old ledger, e.g. reports/ledger-1001.sqlite")
    migrate = ledger_sub.add_parser(
        "migrate", help="copy a ledger file into a shared PostgreSQL ledger of the same tenant (safe to repeat)"
    )
    migrate.add_argument("file", type=Path, help="the ledger file, e.g. the one `jobimport ledger path` prints")
    migrate.add_argument("url", help="the shared ledger: postgresql://user@host/database (password: ~/.pgpass)")
    for each in (where, adopt):
        each.add_argument("--env-file", type=Path, help="a .env-style file with the BIGCHANGE_* settings")
        each.add_argument(
            "--state-dir", type=Path, help="where ledgers live (default: $JOBIMPORT_HOME, else the user's)"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args: argparse.Namespace | None = None
    saved = sys.stdout
    try:
        guard_stdout()  # (control characters from files made visible; a reader that went away ends nothing)
        args = build_parser().parse_args(argv)
        return _dispatch(args)
    except JobImportError as exc:
        print(f"jobimport: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("jobimport: interrupted before anything was sent; nothing was changed", file=sys.stderr)
        return 3
    except Exception as exc:
        if args is not None and args.debug:
            raise
        print(
            f"jobimport: unexpected error {type(exc).__name__}: {one_line(exc)} — please report it; rerun with "
            "--debug for details (the ledger keeps every row's state, so a rerun is safe)",
            file=sys.stderr,
        )
        return 2
    finally:
        sys.stdout = saved


def _jobimport_variables(args: argparse.Namespace) -> None:
    """JOBIMPORT_* variables (the state home, the drop's webhook) set in an --env-file count as if set in the
    environment, which wins, as it does for the BIGCHANGE_* settings: the file is what a scheduled task or a
    Windows user hands over."""
    env_file = getattr(args, "env_file", None)
    if env_file is not None:
        from pipeline.settings import read_env_file

        for key, value in read_env_file(env_file).items():
            if key.startswith("JOBIMPORT_") and key not in os.environ:
                os.environ[key] = value
    if hasattr(args, "notify_webhook") and args.notify_webhook is None:
        args.notify_webhook = os.environ.get("JOBIMPORT_NOTIFY_WEBHOOK") or None


def _dispatch(args: argparse.Namespace) -> int:
    _jobimport_variables(args)
    if args.command in ("run", "validate"):
        return _run(args, dry_run=args.command == "validate" or args.dry_run)
    if args.command == "tenant":
        from pipeline.tenant.cli import pull_command

        return pull_command(args)
    if args.command == "init-mapping":
        from pipeline.draft_mapping import init_mapping_command

        return init_mapping_command(args)
    if args.command == "sandbox":
        from pipeline.sandbox.config import config_from_args
        from pipeline.sandbox.server import serve

        serve(config_from_args(args))
        return 0
    if args.command == "demo":
        from pipeline.api import result_of
        from pipeline.demo import run_demo

        return _render(result_of(run_demo(args.report_dir)), demo=True)
    if args.command == "report":
        from pipeline.history import rebuild_reports

        result = rebuild_reports(args.run_id, args.report_dir, args.ledger, args.state_dir)
        print(f"reports of run {args.run_id} rebuilt in {result.report_dir}")
        for name, path in result.paths.as_dict().items():
            if path:
                print(f"  {name}: {path}")
        return 0
    if args.command == "drop":
        return _drop(args)
    if args.command == "status" and args.file is not None:
        from pipeline.history import ledgers
        from pipeline.signoff import render, sign_off, write_signoff

        signed = sign_off(args.file, ledgers(args.report_dir, args.ledger, args.state_dir))
        write_signoff(signed)
        print(render(signed))
        return 0 if signed.done else 1
    if args.command == "status":
        from pipeline.drop import passes_table
        from pipeline.history import recent_runs

        passes = passes_table(args.state_dir, args.limit)
        try:
            print(recent_runs(args.report_dir, args.ledger, args.limit, args.state_dir, args.all))
        except JobImportError:
            if not passes:
                raise
        if passes:
            print(f"\n{passes}")
        return 0
    if args.command == "ledger":
        from pipeline.history import adopt_ledger

        if args.ledger_command == "path":
            from pipeline.history import shown_ledger

            print(shown_ledger(args.env_file, args.state_dir))
            return 0
        if args.ledger_command == "migrate":
            from pipeline.history import migrate_ledger

            print(migrate_ledger(args.file, args.url))
            return 0
        identity, target, renamed = adopt_ledger(args.file, args.env_file, args.state_dir)
        print(f"{args.file} is now the ledger of {identity}: {target} (the old file was renamed {renamed.name})")
        return 0
    raise UsageError(f"unknown command {args.command}")


def _run(args: argparse.Namespace, dry_run: bool) -> int:
    from pipeline.api import ImportOptions, import_file

    options = ImportOptions(
        mapping=args.mapping,
        report_dir=args.report_dir,
        dry_run=dry_run,
        sheet=args.sheet,
        header_row=args.header_row,
        encoding=args.encoding,
        delimiter=args.delimiter,
        env_file=getattr(args, "env_file", None),
        ledger=getattr(args, "ledger", None),
        state_dir=getattr(args, "state_dir", None),
        transport=getattr(args, "transport", "aiohttp"),
        timeout_s=float(getattr(args, "timeout", 30)),
        online=args.online,
        preflight=not getattr(args, "no_preflight", False),
        refdata_max_age_s=args.refdata_max_age,
        max_concurrency=getattr(args, "max_concurrency", 32),
        max_attempts=getattr(args, "max_attempts", 6),
        resend_uncertain=getattr(args, "resend_uncertain", False),
        resend_rejected=getattr(args, "resend_rejected", False),
        lookup_before_send=not getattr(args, "no_lookup", False),
    )
    return _render(import_file(args.input, options))


def _drop(args: argparse.Namespace) -> int:
    from pipeline.api import run_drop_pass
    from pipeline.drop import DropOptions, Notifier, Route

    options = DropOptions(
        folder=args.folder,
        routes=[Route.parse(text) for text in args.mapping],
        report_root=args.report_dir,
        env_file=args.env_file,
        settle_s=args.settle,
        ready_marker=args.ready_marker,
        keep_days=args.keep_days,
        notifier=Notifier(args.notify_webhook, args.notify_command, args.notify_all),
        max_concurrency=args.max_concurrency,
        max_attempts=args.max_attempts,
        timeout_s=float(args.timeout),
        rescan_s=max(1.0, args.rescan),
        state_dir=args.state_dir,
    )
    return run_drop_pass(options, lambda text: print(one_line(text), flush=True), watch=args.watch).exit_code


def _render(result: ImportResult, demo: bool = False) -> int:
    summary = result.summary
    where = f" (sheet {summary.sheet})" if summary.sheet else ""
    enc = f", {summary.encoding}" if summary.encoding else ""
    print(one_line(f"{'dry run' if summary.dry_run else 'run'} {result.run_id}: {summary.input}{where}{enc}"))
    if not summary.dry_run:
        print(f"  to {one_line(summary.target)}")
    shown = {k: v for k, v in result.counts.items() if v}
    total = sum(result.counts.values())
    print(f"  {total} rows: " + ", ".join(f"{n} {status}" for status, n in shown.items()))
    if not summary.dry_run:
        print(
            f"  sent {summary.rows_sent} requests in {summary.duration_s:.1f} s "
            f"({summary.throughput_rows_per_s:.0f}/s), {summary.retries} retries, {summary.http_429} throttled"
        )
    for note in summary.notes:
        if " is not UTF-8: it was read as " not in note:  # (the first line already names the encoding)
            print(f"  {one_line(note)}")
    if result.stop_message:
        print(f"jobimport: stopped: {one_line(result.stop_message)}", file=sys.stderr)
    print(f"  reports: {result.report_dir}{os.sep}")
    for name, path in result.reports.as_dict().items():
        if path:
            print(f"    {name}: {path}")
    if demo:
        # The sample has rows that are wrong on purpose: exit 1 is what the import of that file should answer.
        print(
            f"  exit {result.exit_code}: {EXIT_MEANING.get(result.exit_code, '')} "
            "(the sample's mistakes are on purpose: 1 is the expected answer)"
        )
        return result.exit_code
    meaning = "every row valid" if summary.dry_run and result.exit_code == 0 else EXIT_MEANING.get(result.exit_code, "")
    print(f"  exit {result.exit_code}: {meaning}")
    return result.exit_code
