"""Dagster definitions for many tenants' drop folders: one sensor per tenant, one run per dropped file, never twice.

    # definitions.py (a Dagster code location)
    from pipeline.orchestrate.dagster import build_definitions
    defs = build_definitions("tenants.toml")

Per tenant (pipeline/orchestrate/tenants.py):

- sensor `drops_<tenant>`: every `interval_s`, the files of the folder that settled by the drop's own rules
  (pipeline/api.py `settled_drops`), one `RunRequest` each with `run_key` = the file's sha256 (the daemon never
  starts a second run for a key this sensor used) and tags `jobimport/tenant`, `jobimport/file`. A file whose
  content already had a finished run (the same bytes dropped again, under any name) gets a run keyed
  `<sha256>-again-<mtime>` that files it as the drop does: done/ + `.duplicate.txt` when it was imported,
  imported again when it had failed — never skipped silently. A file whose earlier run ended before taking it
  (refused, a variable not set) waits for that run to be re-executed, with a warning at each tick. A file that
  cannot be looked at is one warning in the tick's log; the others still run.
- job `import_<tenant>` (one op, in-process executor): claims the file if its content is still the run's sha256,
  imports it and files it into done/ · attention/ · failed/ exactly as `jobimport drop` (pipeline/api.py
  `handle_dropped_file`). Metadata: counts per status, exit code, outcome, where the file went, report paths.
  Rows needing attention (exit 1) or a failed file (exit 2) → `Failure` with a one-line reason, not retried; the
  API down (exit 3, retryable) → `RetryRequested` (`api_retries` times, `retry_wait_s` apart), the file waiting in
  processing/ meanwhile. Run retries are turned off by tags (a new run would not know better).
- secrets: the tenant's `env` names variables resolved by Dagster (`EnvVar`) when the run starts: never in run
  config, storage or the event log (the resource's fields are `repr=False`).
- a run executed outside the process that launched it (a run worker) is refused unless the tenant has a shared
  ledger (`ledger_url`), or `local_ledger = true` says every run executes on this one machine.
"""

# No `from __future__ import annotations`: Dagster reads the op's and resources' annotations at runtime.
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from pipeline.orchestrate.tenants import TenantConfig, load_tenants

TENANT_TAG = "jobimport/tenant"
FILE_TAG = "jobimport/file"
OUTCOME_TAG = "jobimport/outcome"  # set by a run that took its file (done, attention, failed, processing…)
OP_NAME = "import_dropped_file"
#: tags of every run: no run-level retries (an op retries only an API outage, RetryRequested), whatever the instance
RUN_TAGS = {"dagster/max_retries": "0", "dagster/retry_on_asset_or_op_failure": "false"}


class DroppedFile(dg.Config):
    """The run's config: which file, by name and content. Nothing secret."""

    name: str
    sha256: str
    size: int


class TenantResource(dg.ConfigurableResource):
    """One tenant's drop settings for its runs. Secrets come in through `EnvVar` fields and never print."""

    name: str
    folder: str
    routes: list[str]  # "PATTERN=FILE" or "FILE"
    env_file: str | None = None
    client_id: str | None = Field(default=None, repr=False)
    client_secret: str | None = Field(default=None, repr=False)
    base_url: str | None = None
    token_url: str | None = None
    customer_id: str | None = None
    ledger_url: str | None = Field(default=None, repr=False)  # may hold a password
    local_ledger: bool = False
    settle_s: float = 60.0
    ready_marker: str | None = None
    report_dir: str | None = None
    state_dir: str | None = None
    max_concurrency: int = 32
    max_attempts: int = 6
    timeout_s: float = 30.0
    api_retries: int = 5
    retry_wait_s: float = 300.0

    def settings_environ(self) -> dict[str, str]:
        """The BIGCHANGE_* values the orchestrator resolved (the env file gives the rest)."""
        values = {
            "BIGCHANGE_CLIENT_ID": self.client_id,
            "BIGCHANGE_CLIENT_SECRET": self.client_secret,
            "BIGCHANGE_BASE_URL": self.base_url,
            "BIGCHANGE_TOKEN_URL": self.token_url,
            "BIGCHANGE_CUSTOMER_ID": self.customer_id,
        }
        return {k: v for k, v in values.items() if v}

    def drop_options(self) -> Any:
        from pipeline.drop import DropOptions, Route
        from pipeline.settings import load_settings

        settings = load_settings(Path(self.env_file) if self.env_file else None, self.settings_environ())
        return DropOptions(
            folder=Path(self.folder),
            routes=[Route.parse(text) for text in self.routes],
            report_root=Path(self.report_dir) if self.report_dir else None,
            settle_s=self.settle_s,
            ready_marker=self.ready_marker,
            max_concurrency=self.max_concurrency,
            max_attempts=self.max_attempts,
            timeout_s=self.timeout_s,
            state_dir=Path(self.state_dir) if self.state_dir else None,
            settings=settings,
        )


_ENV_FIELDS = {
    "BIGCHANGE_CLIENT_ID": "client_id",
    "BIGCHANGE_CLIENT_SECRET": "client_secret",
    "BIGCHANGE_BASE_URL": "base_url",
    "BIGCHANGE_TOKEN_URL": "token_url",
    "BIGCHANGE_CUSTOMER_ID": "customer_id",
}


def tenant_resource(tenant: TenantConfig) -> TenantResource:
    env: dict[str, Any] = {_ENV_FIELDS[key]: dg.EnvVar(variable) for key, variable in tenant.env.items()}
    return TenantResource(
        name=tenant.name,
        folder=str(tenant.folder),
        routes=[f"{r.pattern}={r.mapping}" if r.pattern else str(r.mapping) for r in tenant.routes],
        env_file=str(tenant.env_file) if tenant.env_file else None,
        ledger_url=tenant.ledger_url,
        local_ledger=tenant.local_ledger,
        settle_s=tenant.settle_s,
        ready_marker=tenant.ready_marker,
        report_dir=str(tenant.report_dir) if tenant.report_dir else None,
        state_dir=str(tenant.state_dir) if tenant.state_dir else None,
        max_concurrency=tenant.max_concurrency,
        max_attempts=tenant.max_attempts,
        timeout_s=tenant.timeout_s,
        api_retries=tenant.api_retries,
        retry_wait_s=tenant.retry_wait_s,
        **env,
    )


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _executed_in_process(context: dg.OpExecutionContext) -> bool:
    """`execute_in_process` (tests, a notebook) swaps in this executor; a launched run never has it."""
    return bool(context.job_def.executor_def.name == "execute_in_process_executor")


@dg.op(name=OP_NAME)
def import_dropped_file(context: dg.OpExecutionContext, config: DroppedFile, tenant: TenantResource) -> None:
    """Claim the file, import it, file it as `jobimport drop` does; fail (or retry, for an API outage) in one line."""
    from pipeline.api import handle_dropped_file, is_retryable
    from pipeline.errors import JobImportError

    if not tenant.ledger_url and not tenant.local_ledger and not _executed_in_process(context):
        raise dg.Failure(
            f"tenant {tenant.name}: this run executes in a run worker, but the tenant has no shared ledger, so two "
            "workers could each send the same rows: set ledger_url = 'postgresql://…' for it in the tenants file "
            "(or local_ledger = true if every run executes on this one machine)",
            allow_retries=False,
        )
    try:
        options = tenant.drop_options()
        result = handle_dropped_file(
            options, config.name, config.sha256, context.log.info, ledger_url=tenant.ledger_url
        )
    except JobImportError as exc:
        if exc.retryable and context.retry_number < tenant.api_retries:
            context.log.warning(f"{config.name}: {one_line(str(exc))}; trying again in {tenant.retry_wait_s:g} s")
            raise dg.RetryRequested(max_retries=tenant.api_retries, seconds_to_wait=tenant.retry_wait_s) from None
        raise dg.Failure(f"tenant {tenant.name}, {config.name}: {one_line(str(exc))}", allow_retries=False) from None
    metadata: dict[str, Any] = {
        "outcome": result.outcome,
        "exit_code": result.exit_code,
        "rows": result.rows if result.rows is not None else 0,
        "counts": dg.MetadataValue.json(result.counts),
        "file": result.name,
        "sha256": result.sha256,
    }
    for status, n in result.counts.items():
        metadata[f"rows_{status}"] = n
    if result.path is not None:
        metadata["filed_to"] = dg.MetadataValue.path(str(result.path))
    if result.run_id:
        metadata["jobimport_run_id"] = result.run_id
    if result.report_dir is not None:
        metadata["reports"] = dg.MetadataValue.path(str(result.report_dir))
    if result.reports is not None:
        for name, path in result.reports.as_dict().items():
            if path:
                metadata[f"report_{name}"] = dg.MetadataValue.path(path)
    if result.duplicate_of:
        metadata["duplicate_of"] = dg.MetadataValue.json(result.duplicate_of)
    if result.reason:
        metadata["reason"] = one_line(result.reason)
    context.instance.add_run_tags(
        context.run_id, {OUTCOME_TAG: result.outcome, "jobimport/exit_code": str(result.exit_code)}
    )
    reason = one_line(result.reason)
    retryable = result.outcome == "processing" and is_retryable(result.stop)
    if retryable and context.retry_number < tenant.api_retries:
        context.log.warning(
            f"{result.name}: stopped ({result.stop}): {reason}; trying again in {tenant.retry_wait_s:g} s"
        )
        raise dg.RetryRequested(max_retries=tenant.api_retries, seconds_to_wait=tenant.retry_wait_s)
    if result.exit_code != 0:
        counted = ", ".join(f"{n} {status}" for status, n in result.counts.items() if n)
        why = {
            "attention": f"{result.name}: {counted} — rows need attention: the corrections workbook is beside the "
            f"file in attention/ ({result.path})",
            "failed": f"{result.name}: could not be imported: {reason}",
            "processing": f"{result.name}: stopped: {reason}",
        }.get(result.outcome, f"{result.name}: {result.outcome}: {reason}")
        raise dg.Failure(one_line(why), metadata=metadata, allow_retries=False)
    context.add_output_metadata(metadata)


def tenant_job(tenant: TenantConfig) -> dg.JobDefinition:
    @dg.graph(name=f"import_{tenant.name}")
    def one_file() -> None:
        import_dropped_file()

    return one_file.to_job(
        name=f"import_{tenant.name}",
        description=f"Claim, import and file one file dropped in {tenant.folder} (tenant {tenant.name}).",
        resource_defs={"tenant": tenant_resource(tenant)},
        executor_def=dg.in_process_executor,
        tags={TENANT_TAG: tenant.name, **RUN_TAGS},
    )


def _latest_run_of(instance: dg.DagsterInstance, tenant: str, key: str) -> dg.DagsterRun | None:
    """The latest run of this tenant keyed `key` (what the daemon de-duplicates against), if any."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={"dagster/run_key": key, TENANT_TAG: tenant}), limit=1
    )
    return records[0].dagster_run if records else None


def tenant_sensor(tenant: TenantConfig, job: dg.JobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"drops_{tenant.name}",
        job=job,
        minimum_interval_seconds=tenant.interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Settled files in {tenant.folder}: one run each, keyed by sha256.",
    )
    def drops(context: dg.SensorEvaluationContext) -> Any:
        from pipeline.api import settled_drops

        try:
            files = settled_drops(tenant.folder, tenant.settle_s, tenant.ready_marker)
        except Exception as exc:  # the folder is gone or unreadable: say so, try again at the next tick
            return dg.SkipReason(f"{tenant.folder}: cannot be looked at: {one_line(str(exc))}")
        requests = []
        for dropped in files:
            try:
                key = dropped.sha256
                earlier = _latest_run_of(context.instance, tenant.name, key)
                if earlier is not None and not earlier.is_finished:
                    continue  # its run is queued or going: it takes this file, or files it as a duplicate after
                if earlier is not None and OUTCOME_TAG not in earlier.tags:
                    context.log.warning(
                        f"{dropped.name}: run {earlier.run_id} of this content ended ({earlier.status.value}) before "
                        "taking the file; Dagster never runs a key twice: fix what it says and re-execute that run"
                    )
                    continue
                if earlier is not None:  # the same content again, under any name: a run files it as a drop would
                    key = f"{dropped.sha256}-again-{dropped.mtime_ns}"
                    context.log.info(f"{dropped.name}: same content as run {earlier.run_id}'s file: a run files it")
                config = DroppedFile(name=dropped.name, sha256=dropped.sha256, size=dropped.size)
                requests.append(
                    dg.RunRequest(
                        run_key=key,
                        run_config=dg.RunConfig(ops={OP_NAME: config}),
                        tags={TENANT_TAG: tenant.name, FILE_TAG: dropped.name},
                    )
                )
            except Exception as exc:  # one file must not hold up the others
                context.log.warning(f"{dropped.name}: skipped this tick: {type(exc).__name__}: {one_line(str(exc))}")
        if not requests:
            return dg.SkipReason(f"no new settled file in {tenant.folder}")
        return requests

    return drops


def build_definitions(tenants_file: str | Path) -> dg.Definitions:
    """The sensors and jobs of every tenant of a tenants file (pipeline/orchestrate/tenants.py)."""
    tenants = load_tenants(Path(tenants_file))
    jobs = [tenant_job(t) for t in tenants]
    sensors = [tenant_sensor(t, j) for t, j in zip(tenants, jobs, strict=True)]
    return dg.Definitions(jobs=jobs, sensors=sensors)
