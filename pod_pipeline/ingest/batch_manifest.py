"""Batch manifests: sealing a batch, and verifying one against the files it lists."""

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "manifest.json"
SITE_PATTERN = re.compile(r"^[a-z0-9]+$")
EXPORT_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z$")
# The files the contract knows, in the order they are loaded (later files are checked against the
# register of the same batch).
KNOWN_FILES = (
    "register.csv",
    "redcap_dictionary.csv",
    "redcap_records.csv",
    "honos.csv",
    "network_meetings.csv",
    "acute_care.csv",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_time(export_id: str) -> dt.datetime:
    """The UTC export time a batch folder is named by (20261120T060000Z)."""
    return dt.datetime.strptime(export_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def seal_batch(batch_dir: Path) -> Path:
    """Write manifest.json for a batch assembled by hand: every CSV in the folder, with its SHA-256.

    The folder must be <landing root>/<site>/<export_id>/. The manifest is written to a temporary
    name and renamed, so a watcher never sees a half-written manifest (it marks the batch complete).
    """
    batch_dir = Path(batch_dir).resolve()
    site, export_id = batch_dir.parent.name, batch_dir.name
    if not SITE_PATTERN.match(site):
        raise ValueError(f"{batch_dir}: site folder {site!r} must be lower-case letters and digits")
    if not EXPORT_ID_PATTERN.match(export_id):
        raise ValueError(f"{batch_dir}: batch folder {export_id!r} must be a UTC time like 20261120T060000Z")
    files = sorted(p for p in batch_dir.glob("*.csv") if p.is_file())
    if not files:
        raise ValueError(f"{batch_dir}: no CSV files to seal")
    manifest = {
        "site": site,
        "export_id": export_id,
        "exported_at": export_time(export_id).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": {p.name: sha256_file(p) for p in files},
    }
    target = batch_dir / MANIFEST
    partial = batch_dir / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    partial.replace(target)
    return target


@dataclass
class BatchCheck:
    """The outcome of checking one sealed batch against its manifest."""

    site: str
    export_id: str
    path: Path
    manifest_sha256: str
    files: dict[str, Path] = field(default_factory=dict)  # accepted known files, name -> path
    unlisted: list[str] = field(default_factory=list)  # files present but not in the manifest
    unknown: list[str] = field(default_factory=list)  # listed, verified, but not a contract file
    error_reason: str | None = None  # a quarantine reason code when the batch is rejected
    error_file: str | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.error_reason is None


def manifest_sha256(batch_dir: Path) -> str:
    """The digest a batch is known by in the ledger: its manifest's bytes (cheap; no data file read)."""
    return hashlib.sha256((batch_dir / MANIFEST).read_bytes()).hexdigest()


def check_batch(batch_dir: Path) -> BatchCheck:
    """Verify a sealed batch: site and export id match the folders, every listed file matches.

    Any mismatch rejects the whole batch, naming the file; nothing of it is loaded.
    """
    site, export_id = batch_dir.parent.name, batch_dir.name
    manifest_path = batch_dir / MANIFEST
    raw = manifest_path.read_bytes()
    check = BatchCheck(site, export_id, batch_dir, hashlib.sha256(raw).hexdigest())

    def reject(reason: str, file: str, message: str) -> BatchCheck:
        check.error_reason, check.error_file, check.error = reason, file, message
        return check

    try:
        manifest = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return reject("manifest_invalid", MANIFEST, f"{manifest_path}: not valid JSON ({exc})")
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in listed.items()
    ):
        return reject("manifest_invalid", MANIFEST,
                      f"{manifest_path}: needs site, export_id and files {{name: sha256}}")
    for key, expected in (("site", site), ("export_id", export_id)):
        if manifest.get(key) != expected:
            return reject("manifest_mismatch", MANIFEST,
                          f"{manifest_path}: {key} {manifest.get(key)!r} does not match folder {expected!r}")
    for name, digest in sorted(listed.items()):
        path = batch_dir / name
        if "/" in name or "\\" in name or not path.is_file():
            return reject("file_missing", name, f"{path}: listed in the manifest but not in the batch")
        actual = sha256_file(path)
        if actual.lower() != digest.lower():
            return reject("checksum_mismatch", name,
                          f"{path}: SHA-256 {actual} differs from the manifest's {digest}")
        if name in KNOWN_FILES:
            check.files[name] = path
        else:
            check.unknown.append(name)
    check.unlisted = sorted(
        p.name for p in batch_dir.iterdir()
        if p.is_file() and p.name not in listed and p.name != MANIFEST and not p.name.startswith(".")
    )
    return check
