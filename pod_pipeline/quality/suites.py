"""Great Expectations glue: suites from expectations/*.json validate small DuckDB profiles.

One ephemeral GX context per run, shared by every check of the run, writes Data Docs into
<warehouse>/gx_docs. A validation becomes a Dagster check result: a failed `critical` expectation
gives severity ERROR (blocking), a failed `warning` one WARN (shown, not blocking).
"""

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from pod_pipeline.markdown import markdown_table
from pod_pipeline.settings import EXPECTATIONS_DIR

DOCS_SITE = "pod_quality"
DATASOURCE = "quality_profiles"
# GX severities that fail a check; `info` expectations are reported in Data Docs only.
FAILING = ("critical", "warning")


@dataclass(frozen=True)
class Failure:
    """One failed expectation, with the profile rows (named by the suite's grain) that broke it."""

    severity: str
    column: str | None
    description: str
    rows: list[dict[str, Any]]
    error: str | None  # the expectation could not be evaluated (a missing column, say)


@dataclass(frozen=True)
class Validation:
    suite: str
    grain: list[str]
    failures: list[Failure]
    result: dict[str, Any]  # the GX result, JSON-safe
    docs_page: Path | None

    def of(self, column: str, value: Any) -> "Validation":
        """This validation as it bears on the profile rows whose `column` is `value`.

        Failures keep those rows only, and a failure left without rows is no failure for them
        (an expectation that could not be evaluated fails for all); the statistics are counted
        again, and the grain drops `column`, which now says nothing.
        """
        failures = [replace(f, rows=[row for row in f.rows if row.get(column) == value])
                    for f in self.failures]
        failures = [f for f in failures if f.rows or f.error]
        evaluated = len(self.result.get("results", []))
        statistics = {
            "evaluated_expectations": evaluated,
            "successful_expectations": evaluated - len(failures),
            "unsuccessful_expectations": len(failures),
            "success_percent": 100.0 * (evaluated - len(failures)) / evaluated if evaluated else None,
        }
        return replace(self, grain=[g for g in self.grain if g != column], failures=failures,
                       result={**self.result, "success": not failures, "statistics": statistics})


def load_suite_json(name: str) -> dict[str, Any]:
    """expectations/<name>.json: GX 1.x's own suite JSON (`type`, `kwargs`, `severity`)."""
    return json.loads((EXPECTATIONS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _view(name: str) -> dict[str, str]:
    """A Data Docs view from docs_views (templates compiled once per process, not per page)."""
    return {"module_name": "pod_pipeline.quality.docs_views", "class_name": name}


class _RunContext:
    """An ephemeral GX context writing Data Docs to one folder; one checkpoint per profile."""

    def __init__(self, docs_dir: Path) -> None:
        # Imported here: GX takes seconds to import, which every process loading the
        # definitions (the UI, each test) would otherwise pay.
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        # The ephemeral context ships a default site in a temporary folder: ours replaces it.
        self.context.delete_data_docs_site("local_site")
        self.context.add_data_docs_site(site_name=DOCS_SITE, site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "view": _view("IndexPageView")},
            "site_section_builders": {section: {"view": _view("PageView")}
                                      for section in ("expectations", "validations", "profiling")},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(docs_dir)},
        })
        self.datasource = self.context.data_sources.add_pandas(DATASOURCE)
        self.checkpoints: dict[str, Any] = {}

    def checkpoint(self, suite_name: str, name: str) -> Any:
        """The checkpoint validating profile `name` (its Data Docs page title) with a suite."""
        if name in self.checkpoints:
            return self.checkpoints[name]
        gx, context = self.gx, self.context
        if suite_name not in {suite.name for suite in context.suites.all()}:
            context.suites.add(gx.ExpectationSuite(**load_suite_json(suite_name)))
        suite = context.suites.get(suite_name)
        batch = self.datasource.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite))
        self.checkpoints[name] = context.checkpoints.add(gx.Checkpoint(
            name=name, validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[DOCS_SITE])],
            # COMPLETE, with the grain as index columns: each failure names its profile rows.
            result_format={"result_format": "COMPLETE",
                           "unexpected_index_column_names": suite.meta.get("grain", [])},
        ))
        return self.checkpoints[name]


_contexts: dict[str, _RunContext] = {}


def _run_context(run_id: str, docs_dir: Path) -> _RunContext:
    """The run's GX context: created by the first check of a run, reused by the others."""
    key = f"{run_id}:{docs_dir}"
    if key not in _contexts:
        _contexts.clear()  # one run at a time per process: drop the previous run's context
        _contexts[key] = _RunContext(docs_dir)
    return _contexts[key]


def validate(run_id: str, docs_dir: Path, suite: str, profile: pd.DataFrame,
             parameters: Mapping[str, Any] | None = None, name: str | None = None) -> Validation:
    """Validate a profile with a suite, render its Data Docs page and read the failures.

    `name` tells apart the profiles one suite validates several times in a run (one per mart or
    file); suite parameters (`{"$PARAMETER": ...}` in the JSON) come from `parameters`.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    run = _run_context(run_id, docs_dir)
    checkpoint = run.checkpoint(suite, name or suite)
    # The Dagster run id names the GX run: its Data Docs pages are filed under it.
    outcome = checkpoint.run(batch_parameters={"dataframe": profile},
                             expectation_parameters=dict(parameters or {}),
                             run_id=RunIdentifier(run_name=run_id))
    identifier, result = next(iter(outcome.run_results.items()))
    as_json = result.to_json_dict()
    failures = []
    for item in as_json["results"]:
        if item["success"]:
            continue
        config, exception = item["expectation_config"], item.get("exception_info") or {}
        failures.append(Failure(
            severity=str(config.get("severity", "critical")),
            column=config["kwargs"].get("column"),
            description=config.get("description") or config["type"],
            rows=list((item.get("result") or {}).get("unexpected_index_list") or []),
            error=(exception.get("exception_message") or "raised")
            if exception.get("raised_exception") else None,
        ))
    urls = run.context.get_docs_sites_urls(resource_identifier=identifier, site_names=[DOCS_SITE])
    page = Path(urllib.parse.unquote(urllib.parse.urlparse(urls[0]["site_url"]).path)) \
        if urls else None
    grain = checkpoint.validation_definitions[0].suite.meta.get("grain", [])
    return Validation(suite, grain, failures, as_json, page)


def validate_together(run_id: str, docs_dir: Path, suite: str, profiles: Mapping[str, pd.DataFrame],
                      key: str, name: str | None = None) -> dict[str, Validation]:
    """Validate several profiles with one suite in one GX run: each profile's own Validation.

    The profiles are stacked with `key` naming each one's rows (the suite's grain starts with
    it), so GX runs once and writes one Data Docs page for all of them: a GX run costs about
    0.2 s whatever its profile's size, which a study-scale refresh paid once per mart.
    """
    stacked = pd.concat([profile.assign(**{key: name}) for name, profile in profiles.items()],
                        ignore_index=True)
    stacked = stacked[[key, *(column for column in stacked.columns if column != key)]]
    validation = validate(run_id, docs_dir, suite, stacked, name=name)
    return {profile: validation.of(key, profile) for profile in profiles}


def check_result(validation: Validation, metadata: Mapping[str, Any]) -> dg.AssetCheckResult:
    """The Dagster result: ERROR if a critical expectation failed (or could not run), else WARN."""
    failures = [f for f in validation.failures if f.severity in FAILING or f.error]
    error = any(f.severity == "critical" or f.error for f in failures)
    failed = [(f.severity, f.column, len(f.rows), _first_rows(f.rows, validation.grain),
               f.error or "") for f in failures]
    docs = {} if validation.docs_page is None else {
        "gx_data_docs": dg.MetadataValue.path(str(validation.docs_page)),
        "gx_data_docs_url": dg.MetadataValue.url(validation.docs_page.as_uri()),
    }
    return dg.AssetCheckResult(
        passed=not failures,
        severity=dg.AssetCheckSeverity.WARN if failures and not error
        else dg.AssetCheckSeverity.ERROR,
        # The first sentence of each failed expectation's description says what broke.
        description="; ".join(dict.fromkeys(f.description.split(". ")[0] for f in failures))
        or None,
        metadata={
            **metadata,
            "failed_expectations": dg.MetadataValue.md(markdown_table(
                ["severity", "column", "failing rows", "first failing", "error"], failed)),
            **docs,
            "gx_result": dg.MetadataValue.json(_summary(validation.result, failures)),
        },
    )


def _first_rows(rows: Sequence[Mapping[str, Any]], grain: Sequence[str], limit: int = 5) -> str:
    return "; ".join(" / ".join(str(row.get(g)) for g in grain) for row in rows[:limit])


def _summary(result: dict[str, Any], failures: Sequence[Failure]) -> dict[str, Any]:
    """The GX result's statistics and failed expectations, small enough for the event log."""
    return {
        "suite_name": result.get("suite_name"),
        "statistics": result.get("statistics"),
        "failed": [{"severity": f.severity, "column": f.column, "description": f.description,
                    "rows": f.rows[:20], "error": f.error} for f in failures],
    }
