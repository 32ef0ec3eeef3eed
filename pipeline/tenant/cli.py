"""`jobimport tenant pull [INPUT --mapping FILE] [--all-persons] [--export DIR]`: fetch the tenant's reference data
now, cache it for `validate --online` and `run`, and print what was fetched (and, with --export, the look-up
files written)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import logs
from pipeline.errors import UsageError
from pipeline.settings import load_settings
from pipeline.tenant.refdata import PullStats, RefData, TenantSource, cache_path, export_csv, pull


def _contacts_of_file(args: argparse.Namespace, source: TenantSource) -> set[int]:
    """The contact ids a job file uses under its mapping (look-ups against the tenant included)."""
    from pipeline.mapping import apply_mapping, bind_tenant, load_mapping
    from pipeline.read import read_table

    mapping = bind_tenant(load_mapping(args.mapping), source)
    raw = read_table(
        args.input,
        sheet=args.sheet or mapping.sheet,
        header_row=mapping.header_row,
        encoding=mapping.encoding,
        delimiter=mapping.delimiter,
        limits=mapping.read_limits,
    )
    frame = apply_mapping(raw, mapping).frame
    return {int(c) for c in frame.get_column("contactId").drop_nulls().unique().to_list()}


def pull_command(args: argparse.Namespace) -> int:
    if args.input is not None and args.mapping is None:
        raise UsageError("tenant pull: INPUT needs --mapping (to find the contacts it uses) (see --help)")
    if args.mapping is not None and args.input is None:
        raise UsageError("tenant pull: --mapping needs the INPUT file it maps (see --help)")
    logs.quiet_unless_configured()
    settings = load_settings(args.env_file)
    stats: PullStats
    if args.all_persons:
        data, stats = pull(settings, all_persons=True, home=args.state_dir)
    else:
        source = TenantSource(settings, max_age_s=0.0, home=args.state_dir)
        if args.input is not None:
            source.persons_of(_contacts_of_file(args, source))
        data, stats = source.data, source.stats
    _print(data, stats, args.state_dir)
    if args.export is not None:
        for name, (path, written, left_out) in export_csv(data, args.export).items():
            why = f" ({left_out} left out: blank or shared key; use a bigchange: look-up for those)" if left_out else ""
            if name == "persons_all.csv":
                why = " (every person, for reading: not a look-up file)"
            print(f"  wrote {path}: {written} rows{why}")
    return 0


def _print(data: RefData, stats: PullStats, home: Path | None) -> None:
    scope = "every contact" if data.persons_scope is None else f"{len(data.persons_scope)} contacts"
    if data.persons_scope is not None and not data.persons_scope:
        persons = "no persons fetched (INPUT --mapping: those of the contacts a file uses; --all-persons: all)"
    else:
        persons = f"{len(data.persons)} persons (of {scope})"
    print(f"reference data of {data.identity}, fetched {data.fetched_at_iso}:")
    print(f"  {len(data.job_types)} job types, {len(data.contacts)} contacts, {persons}")
    print(f"  {stats.requests} requests, {stats.retries} retries, {stats.seconds:.2f} s")
    print(f"  cached in {cache_path(data.identity, home)}")
