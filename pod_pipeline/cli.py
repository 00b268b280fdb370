"""The `pod` command line: run the pipeline, make synthetic landing zones, seal batches."""

import argparse
import sys
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from pod_pipeline.synth import generate

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
    from pod_pipeline.ingest.manifest import seal_batch

    for batch in args.batch_dirs:
        print(f"sealed {seal_batch(Path(batch))}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pod_pipeline.runner import run_pipeline

    return run_pipeline(force=args.force)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pod", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="materialise every asset for the configured landing zone")
    run.add_argument("--force", action="store_true",
                     help="rebuild even when nothing new has landed since the last successful run")
    run.set_defaults(func=_run)

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

    seal = commands.add_parser("seal", help="write manifest.json for batches assembled by hand")
    seal.add_argument("batch_dirs", nargs="+", metavar="BATCH_DIR")
    seal.set_defaults(func=_seal)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
