"""`pod run`: the whole pipeline in-process on the persistent Dagster instance, then a summary."""

import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import dagster as dg
import duckdb
import sqlalchemy.exc
import yaml
from dagster_shared.error import SerializableErrorInfo

from pod_pipeline import collector, worklock
from pod_pipeline.preload import import_in_background
from pod_pipeline.settings import Settings, SettingsError, masked_url
from pod_pipeline.transform import warm_dbt

INSTANCE_TEMPLATE = Path(__file__).with_name("dagster.yaml")
DAGSTER_POSTGRES_ENV = "POD_DAGSTER_POSTGRES_URL"
# What quality/suites.py imports when the run's first check validates (see execute).
IMPORTED_WHILE_LOADING = ("great_expectations", "great_expectations.core.run_identifier",
                          "great_expectations.data_context.types.base")
# With the instance in PostgreSQL, the template's storage section is replaced by this one. The URL
# stays in the environment of each process that opens the instance (Dagster reads it there), so no
# password is written to disk.
POSTGRES_STORAGE = {"postgres": {"postgres_url": {"env": DAGSTER_POSTGRES_ENV}}}
POSTGRES_HEADER = f"""\
# Written by pod from pod_pipeline/app/dagster.yaml, where each setting is explained, with its
# storage replaced because {DAGSTER_POSTGRES_ENV} is set: runs, event logs, schedules and sensor
# ticks are stored in PostgreSQL (dagster-postgres), shared by every process given that setting.
"""


# More than a run of every asset and check plans (308 events for the whole project).
PLANNED_EVENTS_BATCH = 5000


def instance_yaml(settings: Settings) -> bytes:
    """The instance's dagster.yaml: the project's template, its storage PostgreSQL's when set."""
    template = INSTANCE_TEMPLATE.read_bytes()
    if not settings.dagster_postgres_url:
        return template
    config = yaml.safe_load(template) | {"storage": POSTGRES_STORAGE}
    return (POSTGRES_HEADER + yaml.safe_dump(config, sort_keys=False)).encode()


def prepare_instance(settings: Settings) -> dg.DagsterInstance:
    """The project's Dagster instance (run history for the CLI and the UI alike)."""
    home = settings.dagster_home
    content = instance_yaml(settings)
    try:
        home.mkdir(parents=True, exist_ok=True)
        target = home / "dagster.yaml"
        if not target.exists() or target.read_bytes() != content:
            # Replaced in one rename: the shared deployment's processes may start side by side.
            staged = home / f".dagster.yaml.{os.getpid()}"
            staged.write_bytes(content)
            os.replace(staged, target)
    except OSError as exc:
        raise SettingsError(f"cannot write the Dagster instance folder {home}: {exc.strerror}") from exc
    os.environ["DAGSTER_HOME"] = str(home)
    # The events a run plans before it starts (one per asset and per check) are handed to the
    # storage as one batch, which the embedded storage keeps in one transaction per file
    # (app/instance_storage.py); `pod ui` passes this on to the webserver and daemon.
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(PLANNED_EVENTS_BATCH))
    if not settings.dagster_postgres_url:
        return dg.DagsterInstance.get()
    # Imported for a shared instance only: a third of a second of every embedded run otherwise.
    from dagster_postgres.utils import DagsterPostgresException

    os.environ[DAGSTER_POSTGRES_ENV] = settings.dagster_postgres_url
    try:
        return dg.DagsterInstance.get()
    except (DagsterPostgresException, sqlalchemy.exc.OperationalError) as exc:
        # dagster-postgres retries, then raises its own error; the server's reason is its cause.
        cause = exc.__cause__ if isinstance(exc, DagsterPostgresException) and exc.__cause__ else exc
        reason = str(getattr(cause, "orig", None) or cause).strip().splitlines()[0]
        raise SettingsError(f"cannot open the Dagster instance in PostgreSQL ({DAGSTER_POSTGRES_ENV}="
                            f"{masked_url(settings.dagster_postgres_url or '')}): {reason}") from exc


def check_writable(path: Path) -> None:
    """Fail early, naming the folder, when the warehouse cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".pod-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise SettingsError(f"the warehouse folder {path} is not writable: {exc.strerror}") from exc


@dataclass
class RunSummary:
    success: bool
    run_id: str
    seconds: float
    checks: list[tuple[str, str, bool, str]] = field(default_factory=list)  # asset, check, passed, severity
    skipped_steps: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    log_path: Path | None = None
    log_error: str | None = None  # why the run log stopped short (a full disk), if it did


class RunLog:
    """The run's log file as its stdout and stderr. A write that fails (a full disk) is remembered
    and the rest of the log dropped, rather than raised into the run or out of the command: the
    run's events are in the instance either way, and the summary says the log is incomplete."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle
        self.error: str | None = None

    def write(self, text: str) -> int:
        self._guard(self.handle.write, text)
        return len(text)

    def flush(self) -> None:
        self._guard(self.handle.flush)

    def close(self) -> None:
        # Closed even when its last flush fails (the error is still raised, and kept here).
        try:
            self.handle.close()
        except OSError as exc:
            self.error = self.error or exc.strerror or str(exc)

    def _guard(self, call: Callable[..., object], *args: str) -> None:
        if self.error is None:
            try:
                call(*args)
            except OSError as exc:
                self.error = exc.strerror or str(exc)

    def __getattr__(self, name: str) -> object:
        return getattr(self.handle, name)


def execute(job_name: str = "refresh", run_config: dict | None = None, tags: dict | None = None,
            quiet: bool = False, asset_selection: list[dg.AssetKey] | None = None) -> RunSummary:
    """Run a job of the code location in this process, recorded on the project's instance.

    With `quiet`, the step-by-step log (Dagster's and dbt's) goes to a file under
    <warehouse>/logs instead of the terminal; the run's events are in the instance either way.
    `asset_selection` runs only those assets of the job.
    """
    settings = Settings.from_env()
    check_writable(settings.warehouse_dir)
    instance = prepare_instance(settings)
    from pod_pipeline.app.recovery import recover_interrupted_runs
    from pod_pipeline.definitions import defs

    collector.settle()
    for run_id in recover_interrupted_runs(instance):
        print(f"pod: run {run_id} was interrupted (its process is gone): marked failed", file=sys.stderr)

    started = time.monotonic()
    log_path = log = None
    with contextlib.ExitStack() as stack:
        # Closed after the run: its SQLite databases are checkpointed then, not left to the exit.
        stack.callback(instance.dispose)
        # One run at a time on the working database: wait here, on the terminal, for a run the
        # sensor, a schedule or the UI started; the run's own resources then hold the same lock.
        stack.enter_context(worklock.hold(settings.warehouse_dir, job=job_name, trigger=(tags or {}).get(
            "pod/trigger", "pod run"), waiting=_say_waiting))
        if quiet:
            log_path = settings.warehouse_dir / "logs" / f"run-{dt.datetime.now():%Y%m%dT%H%M%S}.log"
            try:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log = RunLog(log_path.open("w", encoding="utf-8"))
            except OSError as exc:
                raise SettingsError(f"cannot write the run log {log_path}: {exc.strerror}") from exc
            stack.callback(log.close)
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
        # The run's first Great Expectations check follows the first loads (which are mostly DuckDB's
        # work, outside Python's lock): its 1.3 s import is done by then, beside them.
        import_in_background(IMPORTED_WHILE_LOADING)
        job = defs.resolve_job_def(job_name)
        if _runs_dbt(job, asset_selection):
            # dbt's process starts now and imports dbt while the exports load (transform/warm_dbt.py).
            stack.enter_context(warm_dbt.started())
        result = job.execute_in_process(
            instance=instance, run_config=run_config or {}, tags=tags, raise_on_error=False,
            asset_selection=asset_selection)
    summary = RunSummary(result.success, result.run_id, time.monotonic() - started, log_path=log_path,
                         log_error=log.error if log else None)
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            summary.checks.append((evaluation.asset_key.to_user_string(), evaluation.check_name,
                                   evaluation.passed, evaluation.severity.value))
        elif event.event_type_value == "STEP_SKIPPED":
            summary.skipped_steps.append(event.step_key)
        elif event.event_type_value == "STEP_FAILURE":
            summary.failed_steps.append(event.step_key)
            error = event.event_specific_data.error
            summary.errors.append(f"{event.step_key}: {_root_cause(error) if error else ''}")
    if summary.failed_steps:
        # Dagster records no event for a step it does not start because an upstream step failed.
        started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
        summary.skipped_steps += [node.name for node in result.job_def.nodes_in_topological_order
                                  if node.name not in started | set(summary.skipped_steps)]
    return summary


def _runs_dbt(job: dg.JobDefinition, asset_selection: list[dg.AssetKey] | None) -> bool:
    """Whether the run will build dbt's models: the job has the dbt step and the selection, if any,
    names one of its assets."""
    from pod_pipeline.transform.assets import pod_dbt_models

    if not any(node.name == pod_dbt_models.op.name for node in job.nodes_in_topological_order):
        return False
    return asset_selection is None or any(key in pod_dbt_models.keys for key in asset_selection)


def _root_cause(error: SerializableErrorInfo) -> str:
    """The first line of the innermost error: what went wrong (a full disk, a file that cannot be
    opened, a failed dbt build), not the Dagster error that wraps it. Python prefixes the message
    with the exception's class and, for a class outside the builtins, its module: the module goes
    ("IOException: ...", not "_duckdb.IOException: ..."), and so does the class of one of the
    pipeline's own errors, whose message says all ("dbt build failed at 1 node: ...")."""
    while (error.cause or error.context) is not None:
        error = error.cause or error.context
    lines = error.message.strip().splitlines()
    if not lines:
        return error.cls_name or "unknown error"
    module, dot, rest = lines[0].partition(f".{error.cls_name}: ") if error.cls_name else ("", "", "")
    if not dot or " " in module:
        return lines[0]
    return rest if module.startswith("pod_pipeline.") else f"{error.cls_name}: {rest}"


def run_pipeline(force: bool = False) -> int:
    """Materialise everything for the configured landing zone and print what a user needs."""
    from pod_pipeline.ingest.assets import FULL_REFRESH

    try:
        settings = Settings.from_env()
        settings.check_landing_dir()
        warning = settings.demo_key_warning()
        with _hold(settings, job="refresh", trigger="pod run"):
            current = None if force else _current_publication(settings)
            if current is None:
                summary = execute(run_config=FULL_REFRESH if force else None, quiet=True)
    except SettingsError as exc:
        print(f"pod run: {exc}", file=sys.stderr)
        return 1
    if current is not None:
        print(f"{_nothing_new(current)}: no batch has landed and the data, settings (reference date "
              f"{settings.reference_date}) and code are those it was made from, so no run was started.\n"
              "`pod run --force` rebuilds anyway.")
        if warning:
            print(f"WARNING: {warning}")
        print("\n".join(_published_section(settings)))
        return 0
    print(report(settings, summary, warning))
    return 0 if summary.success else 1


def _say_waiting(message: str) -> None:
    print(f"pod: {message}", file=sys.stderr)


def _hold(settings: Settings, job: str, trigger: str) -> contextlib.AbstractContextManager[None]:
    """A command's hold on the working database, saying on the terminal while another run has it."""
    check_writable(settings.warehouse_dir)
    return worklock.hold(settings.warehouse_dir, job=job, trigger=trigger, waiting=_say_waiting)


def _nothing_new(current: tuple[str, dt.datetime]) -> str:
    run_id, published_at = current
    return f"POD pipeline: nothing new since the last publication (run {run_id}, {published_at:%Y-%m-%d %H:%M})"


def _current_publication(settings: Settings) -> tuple[str, dt.datetime] | None:
    """The last publication when nothing has changed since it (read-only; None when unsure)."""
    from pod_pipeline.ingest.fingerprint import current_publication

    if not settings.work_db.exists():
        return None
    try:
        with duckdb.connect(str(settings.work_db), read_only=True) as con:
            return current_publication(con, settings)
    except (duckdb.Error, OSError):
        return None  # the run itself will say what is wrong


DELIVERY_OP = "delivery__trial_delivery"  # config is keyed by op name: ["delivery", "trial_delivery"]


def run_delivery(new_folder: bool = False) -> int:
    """A delivery by hand: the weekly_delivery job as its schedule runs it (its delivery step alone when
    nothing is new since the last publication), then the folder written."""
    from pod_pipeline.delivery import deliveries
    from pod_pipeline.delivery.assets import DELIVERY_KEY
    from pod_pipeline.delivery.jobs import weekly_delivery_job
    from pod_pipeline.ingest.assets import FULL_REFRESH

    try:
        settings = Settings.from_env()
        settings.check_landing_dir()
        warning = settings.demo_key_warning()
        root, day = settings.warehouse_dir / "deliveries", deliveries.delivery_day()
        if not new_folder and (root / day.isoformat()).exists():
            # Refused before the run, as the delivery step would refuse after a full rebuild.
            print(f"pod deliver: {root / day.isoformat()} already exists and a delivery folder is never "
                  f"rewritten; `pod deliver --new-folder` delivers again today, into "
                  f"{deliveries.delivery_folder(root, day, new_folder=True).name}", file=sys.stderr)
            return 1
        delivery_config = {DELIVERY_OP: {"config": {"new_folder": new_folder}}}
        with _hold(settings, job=weekly_delivery_job.name, trigger="pod deliver"):
            current = _current_publication(settings)
            if current is None:
                summary = execute(job_name=weekly_delivery_job.name,
                                  run_config={"ops": FULL_REFRESH["ops"] | delivery_config},
                                  tags={"pod/trigger": "pod deliver"}, quiet=True)
            else:
                # Nothing has landed and the data, settings and code are those the publication
                # was made from: a rebuild would publish the same marts, so only the delivery runs.
                summary = execute(job_name=weekly_delivery_job.name, run_config={"ops": delivery_config},
                                  tags={"pod/trigger": "pod deliver"}, quiet=True,
                                  asset_selection=[DELIVERY_KEY])
    except SettingsError as exc:
        print(f"pod deliver: {exc}", file=sys.stderr)
        return 1
    if current is not None:
        print(f"{_nothing_new(current)}, so nothing was rebuilt: the delivery is made from it. "
              "`pod run --force` rebuilds first.")
    print(report(settings, summary, warning))
    if not summary.success:
        return 1
    folder = _delivery_folder(summary.run_id)
    print(f"\nDelivered to {folder}" if folder else "\nNo delivery was written.")
    return 0 if folder else 1


def _delivery_folder(run_id: str) -> Path | None:
    """The folder the run's delivery step wrote, from its materialization's metadata."""
    from pod_pipeline.delivery.assets import DELIVERY_KEY

    records = dg.DagsterInstance.get().all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    for record in records:
        materialization = record.asset_materialization
        if materialization and materialization.asset_key == DELIVERY_KEY:
            return Path(materialization.metadata["path"].value)
    return None


def report(settings: Settings, summary: RunSummary, warning: str | None) -> str:
    lines = [f"POD pipeline run {summary.run_id}: {'SUCCESS' if summary.success else 'FAILED'} "
             f"in {summary.seconds:.1f} s (reference date {settings.reference_date})"]
    if warning:
        lines.append(f"WARNING: {warning}")
    if summary.skipped_steps and not summary.failed_steps and len(summary.checks) == 0:
        lines.append("Nothing new has landed since the last published run; nothing was rebuilt "
                     "(use `pod run --force` to rebuild anyway).")
    last = None if summary.success else _last_publication(settings)
    # A failed run shows the marts only when it published them itself (and then failed to deliver, say).
    current = summary.success or (last is not None and last[1] == summary.run_id)
    if current:
        lines += _published_section(settings)
    if summary.success or summary.checks:
        passed = sum(1 for c in summary.checks if c[2])
        errors = sum(1 for c in summary.checks if not c[2] and c[3] == "ERROR")
        lines.append(f"\nChecks: {passed} passed, {errors} failed (error), "
                     f"{len(summary.checks) - passed - errors} failed (warning)")
    for asset, check, ok, severity in sorted(summary.checks, key=lambda c: (c[3] != "ERROR", c[0], c[1])):
        if not ok:
            label = "FAILED " if severity == "ERROR" else "warning"
            lines.append(f"  {label} {asset} :: {check}")
    if summary.failed_steps:
        lines.append("Failed steps:")
        lines += [f"  {error}" for error in summary.errors]
        skipped = len(summary.skipped_steps)
        lines.append(f"{skipped} downstream step{'' if skipped == 1 else 's'} skipped")
    if current:
        lines += _quarantine_section(settings)
    elif last is None:
        lines.append("\nThis run published nothing, and nothing has been published yet.")
    else:
        when, run_id = last
        by = f" by run {run_id}" if run_id else ""
        lines.append(f"\nThis run published nothing: the publication is unchanged, still the one made "
                     f"{when:%Y-%m-%d %H:%M}{by}: {settings.published_db}")
    if summary.log_path and summary.log_error:
        lines.append(f"\nThe log of this run stops short: writing {summary.log_path} failed "
                     f"({summary.log_error}); every step's events are in the run history")
    elif summary.log_path:
        lines.append(f"\nFull log of this run: {summary.log_path}")
    lines.append(f"Run history and every check's details: `make ui` (DAGSTER_HOME={settings.dagster_home})")
    return "\n".join(lines)


def _last_publication(settings: Settings) -> tuple[dt.datetime, str | None] | None:
    """When the current publication was made and by which run (audit.publications, else the file's time)."""
    if not settings.published_db.exists():
        return None
    with contextlib.suppress(duckdb.Error), duckdb.connect(str(settings.work_db), read_only=True) as con:
        rows = con.execute("select published_at, run_id from audit.publications "
                           "order by published_at desc limit 1").fetchall()
        if rows:
            return rows[0]
    return dt.datetime.fromtimestamp(settings.published_db.stat().st_mtime), None


def _published_section(settings: Settings) -> list[str]:
    database = settings.published_db if settings.published_db.exists() else settings.work_db
    if not database.exists():
        return ["No warehouse has been built yet."]
    try:
        return _tables_of(settings, database)
    except duckdb.Error as exc:
        return [f"\nCannot read {database}: {str(exc).splitlines()[0]}"]


def _tables_of(settings: Settings, database: Path) -> list[str]:
    label = "Published marts" if database == settings.published_db else "Marts (working database)"
    lines = [f"\n{label}: {database}", f"  query: duckdb -readonly {database}"]
    if (settings.warehouse_dir / "marts").exists():
        lines.append(f"  parquet: {settings.warehouse_dir / 'marts'}/<table>.parquet")
    if settings.publish_postgres_url and database == settings.published_db:
        lines.append(f"  postgresql: {masked_url(settings.publish_postgres_url)}, schema marts")
    with duckdb.connect(str(database), read_only=True) as con:
        tables = con.execute("select table_name from information_schema.tables where table_schema = 'marts' "
                             "order by table_name").fetchall()
        for (table,) in tables:
            count = con.execute(f'select count(*) from marts."{table}"').fetchall()[0][0]
            lines.append(f"  marts.{table:<36} {count:>10,} rows")
    return lines


def _quarantine_section(settings: Settings) -> list[str]:
    if not settings.work_db.exists():
        return []
    try:
        return _quarantine_lines(settings)
    except duckdb.Error as exc:
        return [f"\nCannot read {settings.work_db}: {str(exc).splitlines()[0]}"]


def _quarantine_lines(settings: Settings) -> list[str]:
    with duckdb.connect(str(settings.work_db), read_only=True) as con:
        exists = con.execute("select 1 from information_schema.tables where table_schema = 'raw' "
                             "and table_name = 'quarantine'").fetchall()
        if not exists:
            return []
        rows = con.execute("select reason, scope, count(*) from raw.quarantine where is_current_export "
                           "group by all order by 3 desc, 1").fetchall()
        erased = con.execute("select count(*) from raw.register where withdrawal_type = 'all_data'"
                             ).fetchall()[0][0]
    total = sum(n for _, _, n in rows)
    lines = [f"\nQuarantine (current exports): {total} unit(s); see marts.quarantine for file, line and column"]
    lines += [f"  {reason:<22} {scope:<10} {n:>8,}" for reason, scope, n in rows]
    lines.append(f"\nErased: {erased} participant(s) withdrew consent to the use of all their data "
                 "(all_data); they and their carers are in no mart, publication or new delivery.")
    return lines
