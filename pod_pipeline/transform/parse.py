"""dbt's parse of the project: the manifest the Dagster definitions are built from, and the parse a
fresh warehouse's first `dbt build` starts from.

dbt keeps its parse in `partial_parse.msgpack` and reuses it while the project's files, the
command-line vars and the profile's connection details are unchanged; otherwise it parses the
whole project again (about 6 s here). Each warehouse has its own target folder
(`Settings.dbt_target_dir`), and the working database's path is part of the connection details,
so a fresh warehouse could never reuse the project's parse and every first run parsed in full.
The project is therefore parsed as a run with the default settings would be (their vars and
reference date, a working database of the same name), and a fresh warehouse's target starts from
that parse with its connection fingerprint made the warehouse's own (`start_from_project_parse`).
dbt still checks everything else itself: different vars, files or reference date mean it parses
again what changed, as it would have anyway.
"""

import contextlib
import fcntl
import json
import logging
import os
import pprint
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from pod_pipeline.settings import DBT_PROJECT_DIR, WORK_DB_NAME, Settings

TARGET_DIR = DBT_PROJECT_DIR / "target"
DBT_MANIFEST = TARGET_DIR / "manifest.json"
PARTIAL_PARSE = "partial_parse.msgpack"
# What the project was parsed with: a parse is current only for these (and the files below).
PARSE_SETTINGS = TARGET_DIR / "parse_settings.json"
# A file under these changes what `dbt parse` writes to the manifest.
PROJECT_INPUTS = ("models", "seeds", "macros", "tests", "dbt_project.yml", "profiles.yml")
# dbt names the database after the file: the project's parse must name it as a warehouse's does.
PARSE_DB = TARGET_DIR / "parse" / WORK_DB_NAME

log = logging.getLogger(__name__)


def project_files(root: Path = DBT_PROJECT_DIR) -> list[Path]:
    """Every file of the project whose change changes what dbt parses, in a stable order."""
    files = []
    for name in PROJECT_INPUTS:
        path = root / name
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return files


def _newest_input() -> float:
    return max((p.stat().st_mtime for p in project_files()), default=0.0)


def parse_settings() -> dict[str, object]:
    """The vars and environment a run with the default settings gives dbt (the bundled sample's)."""
    defaults = Settings.from_env({})
    return {"vars": defaults.dbt_vars(), "env": {**defaults.dbt_env(), "POD_WORK_DB": str(PARSE_DB)}}


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ensure_dbt_manifest() -> Path:
    """Build dbt's manifest when it is missing, older than the project or parsed with other
    settings (prepare_if_dev does nothing outside `dagster dev`, and a fresh clone has no target).

    Checked and built under a file lock, so processes loading the definitions at once (the test
    suite's workers, the UI's code server beside `pod run`) parse once; dbt writes into a folder of
    its own and the manifest is moved into place whole, so no process reads one half written."""
    TARGET_DIR.mkdir(parents=True, exist_ok=True)
    wanted = parse_settings()
    with (TARGET_DIR / ".manifest.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (DBT_MANIFEST.exists() and DBT_MANIFEST.stat().st_mtime >= _newest_input()
                and PARSE_SETTINGS.exists() and json.loads(PARSE_SETTINGS.read_text()) == wanted):
            return DBT_MANIFEST
        from dbt.cli.main import dbtRunner  # only to parse: not imported by a run that needs no parse

        staging = Path(tempfile.mkdtemp(prefix=".parse-", dir=TARGET_DIR))
        try:
            state = TARGET_DIR / PARTIAL_PARSE
            if state.exists():
                shutil.copy2(state, staging / state.name)
            with _environment(wanted["env"]):
                result = dbtRunner().invoke(["parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
                                             "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(staging),
                                             "--vars", json.dumps(wanted["vars"])])
            if not result.success:
                raise RuntimeError(f"dbt parse failed for {DBT_PROJECT_DIR}: {result.exception}")
            (staging / PARSE_SETTINGS.name).write_text(json.dumps(wanted))
            # The manifest last: its time is what says the parse is current.
            for name in (state.name, PARSE_SETTINGS.name, DBT_MANIFEST.name):
                if (staging / name).exists():
                    os.replace(staging / name, TARGET_DIR / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return DBT_MANIFEST


def connection_checksum(work_db: Path) -> str:
    """The checksum dbt's parse state gives the profile's connection details when the working
    database is `work_db` (dbt's `ManifestLoader.build_manifest_state_check`, with dbt's own
    profile rendering and credentials)."""
    from dbt.config.profile import Profile, read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt.contracts.files import FileHash
    from dbt_common.context import set_invocation_context

    profile = read_profile(str(DBT_PROJECT_DIR))["pod"]
    target = profile["outputs"][profile["target"]]
    set_invocation_context({**os.environ, "POD_WORK_DB": str(work_db)})
    try:
        rendered = ProfileRenderer({}).render_data(target)
    finally:
        set_invocation_context(dict(os.environ))
    rendered.pop("threads", None)
    credentials = Profile._credentials_from_profile(rendered, "pod", profile["target"])
    return FileHash.from_contents(pprint.pformat(sorted(credentials.connection_info()))).checksum


def start_from_project_parse(target_dir: Path, work_db: Path) -> bool:
    """Give a warehouse whose dbt target has no parse yet the project's, as this warehouse's.

    Only the connection fingerprint is rewritten, and only when this module reckons dbt's checksum
    exactly (it must reproduce the one stored for the project's own parse) and the working
    database has the parse's file name (dbt names the database after it). Returns whether it did;
    when it does not, dbt parses in full, as it would have."""
    import msgpack

    destination = target_dir / PARTIAL_PARSE
    source = TARGET_DIR / PARTIAL_PARSE
    if destination.exists() or not source.exists() or work_db.name != PARSE_DB.name:
        return False
    try:
        state = msgpack.unpackb(source.read_bytes(), raw=False, strict_map_key=False)
        fingerprint = state["state_check"]["profile_hash"]
        if fingerprint["checksum"] != connection_checksum(PARSE_DB):
            log.warning("dbt's connection checksum is not reckoned as dbt does: a fresh warehouse parses in full")
            return False
        fingerprint["checksum"] = connection_checksum(work_db)
    except Exception:  # an unreadable parse, or dbt's internals moved: dbt parses in full
        log.warning("could not start from the project's dbt parse", exc_info=True)
        return False
    target_dir.mkdir(parents=True, exist_ok=True)
    staged = destination.with_name(f".{PARTIAL_PARSE}.{os.getpid()}")
    staged.write_bytes(msgpack.packb(state, use_bin_type=True))
    os.replace(staged, destination)
    return True
