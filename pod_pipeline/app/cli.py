"""The `pod` command line: run the pipeline, deliver, make synthetic landing zones, seal batches."""

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from pod_pipeline import collector


def _synth(args: argparse.Namespace) -> int:
    from pod_devtools.synth import generate

    report = generate(
        Path(args.out_dir),
        sites=args.sites,
        participants_per_site=args.participants,
        seed=args.seed,
        batches=args.batches,
        messy=args.messy,
        preset=args.preset,
    )
    print(report.summary())
    return 0


def _seal(args: argparse.Namespace) -> int:
    from pod_pipeline.ingest.batch_manifest import seal_batch

    for batch in args.batch_dirs:
        print(f"sealed {seal_batch(Path(batch))}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pod_pipeline.app.runner import run_pipeline

    return run_pipeline(force=args.force)


def _deliver(args: argparse.Namespace) -> int:
    from pod_pipeline.app.runner import run_delivery

    return run_delivery(new_folder=args.new_folder)


def _ui(args: argparse.Namespace) -> int:
    from pod_pipeline.app.ui import run_ui

    return run_ui(host=args.host, port=args.port)


def _instance(args: argparse.Namespace) -> int:
    """What `pod ui` does first, for processes started otherwise (the shared deployment's units)."""
    from pod_pipeline.app.recovery import recover_interrupted_runs
    from pod_pipeline.app.runner import prepare_instance
    from pod_pipeline.settings import Settings, SettingsError, masked_url

    try:
        settings = Settings.from_env()
        instance = prepare_instance(settings)
    except SettingsError as exc:
        print(f"pod instance: {exc}", file=sys.stderr)
        return 1
    url = settings.dagster_postgres_url
    storage = f"PostgreSQL ({masked_url(url)})" if url else f"SQLite under {settings.dagster_home}"
    print(f"Dagster instance {settings.dagster_home / 'dagster.yaml'}: runs, event logs and ticks in {storage}")
    for run_id in recover_interrupted_runs(instance):
        print(f"pod instance: run {run_id} was interrupted (its process is gone): marked failed")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pod_devtools.bench.run import BASELINE_REF, DEFAULT_WORK, main

    sizes = [int(n.replace("_", "").replace(",", "")) for n in args.sizes.split()]
    baseline = BASELINE_REF if args.baseline is None else args.baseline or None
    return main(sizes, Path(args.out), Path(args.work or DEFAULT_WORK), incremental_at=args.incremental_at,
                noop_at=args.noop_at, baseline_ref=baseline, suite=args.suite)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pod", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="materialise every asset for the configured landing zone")
    run.add_argument("--force", action="store_true",
                     help="rebuild even when nothing new has landed since the last successful run")
    run.set_defaults(func=_run)

    deliver = commands.add_parser("deliver", help="rebuild, publish and deliver to the trial now, as the "
                                                  "weekly schedule does; prints the delivery folder")
    deliver.add_argument("--new-folder", action="store_true",
                         help="deliver again on a day that has a delivery, into <date>_2, _3, ...")
    deliver.set_defaults(func=_deliver)

    synth = commands.add_parser("synth", help="write a contract-conformant synthetic landing zone")
    synth.add_argument("out_dir")
    synth.add_argument("--sites", type=int, default=2, help="number of sites (default 2)")
    synth.add_argument("--participants", type=int, default=50,
                       help="participants per site (default 50)")
    synth.add_argument("--seed", type=int, default=20261125)
    synth.add_argument("--batches", type=int, default=2, help="export batches per site (default 2)")
    synth.add_argument("--messy", action="store_true",
                       help="plant every kind of defect the landing-zone contract names; "
                            "OUT_DIR/planted.json records what was planted where")
    synth.add_argument("--preset", choices=["sample"], default=None,
                       help="'sample': the bundled demo (kmpt original study + national-trial site)")
    synth.set_defaults(func=_synth)

    ui = commands.add_parser("ui", help="the Dagster UI on the same instance and data as `pod run`")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=_ui)

    instance = commands.add_parser("instance", help="write $DAGSTER_HOME/dagster.yaml for the current settings "
                                                    "and fail runs whose process is gone, as `pod ui` does "
                                                    "when it starts")
    instance.set_defaults(func=_instance)

    bench = commands.add_parser("bench", help="measure full, incremental and no-op refreshes by size")
    bench.add_argument("--sizes", default="50 10000 100000 1000000",
                       help="participant counts, space-separated (default: 50 10000 100000 1000000)")
    bench.add_argument("--out", default="bench-results", help="folder for the JSON results")
    bench.add_argument("--work", default=None, help="folder for cached zones and runs (default data/bench)")
    bench.add_argument("--incremental-at", type=int, default=None,
                       help="size at which one new batch at one site is refreshed (default: the largest)")
    bench.add_argument("--noop-at", type=int, default=100_000,
                       help="size at which a refresh with nothing new is measured (default 100000)")
    bench.add_argument("--baseline", default=None,
                       help="git revision whose study-scale full refresh this code's is compared to "
                            "(default: the last commit before the speed work; '' to skip)")
    bench.add_argument("--suite", action="store_true",
                       help="also time `make test` in a clean clone against one `pod run --force` (~1 h)")
    bench.set_defaults(func=_bench)

    seal = commands.add_parser("seal", help="write manifest.json for batches assembled by hand")
    seal.add_argument("batch_dirs", nargs="+", metavar="BATCH_DIR")
    seal.set_defaults(func=_seal)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `pod` program, or one command of it in this process when `argv` is given (the tests)."""
    args = build_parser().parse_args(argv)
    if argv is None:
        collector.own_process()
    code = args.func(args)
    if argv is None and args.func is _run:
        _exit_without_teardown(code)
    return code


def _exit_without_teardown(code: int) -> NoReturn:
    """End `pod run` without Python's teardown. A run has loaded dbt, Dagster, Great Expectations,
    pandas, scipy, statsmodels and matplotlib; freeing their objects one by one when the
    interpreter exits took about 1.5 s of a study-scale run's 27 s, with nothing left to do: by
    now the run has closed every database connection and file it wrote (committed data of an
    unclosed DuckDB or SQLite connection would be in its write-ahead log either way). The
    standard streams and logging are flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A reader that went away (`pod run | head`) or a closed stream: nothing more can be said.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
