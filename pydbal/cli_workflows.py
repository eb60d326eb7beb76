"""``pydbal export``, ``pydbal import`` and ``pydbal validate``: workflow files in and out.

export/import act through the workflow API as ``--user`` with role supergod, so the audit log
names the operator. validate is offline: no database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydbal.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Interrupts,
    add_dsn_argument,
    add_user_argument,
    operator_dsn,
    run,
    user_of,
)
from pydbal.errors import DBALError

if TYPE_CHECKING:
    from pydbal.database import Tenant

_SubParsers = Any
PAGE = 100


# --------------------------------------------------------------------------------------------
# helpers


def expand_paths(paths: Iterable[str]) -> list[Path]:
    """Files as given; folders become their ``*.json`` files (recursively, sorted)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        else:
            files.append(path)
    return files


class Progress:
    """A one-line progress bar on stderr (only when enabled)."""

    def __init__(self, total: int, *, enabled: bool, out: TextIO | None = None) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.out = out if out is not None else sys.stderr
        self.done = 0
        self._last = 0.0

    def step(self, label: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if self.done < self.total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = width * self.done // self.total
        bar = "#" * filled + "-" * (width - filled)
        self.out.write(f"\r[{bar}] {self.done}/{self.total} {label[:40]:<40}")
        if self.done >= self.total:
            self.out.write("\n")
        self.out.flush()


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug[:60] or "workflow"


def _reason(exc: DBALError) -> str:
    reason = exc.details.get("reason") if isinstance(exc.details, dict) else None
    return str(reason or exc.message)


async def all_workflow_ids(tenant: Tenant) -> list[str]:
    ids: list[str] = []
    page = 1
    while True:
        result = await tenant.workflows.list(page=page, limit=PAGE)
        ids.extend(str(w.id) for w in result.items)
        if not result.has_more:
            return ids
        page += 1


def _open_db(dsn: str) -> Any:
    import pydbal

    return pydbal.connect(dsn, min_size=1, max_size=2)


# --------------------------------------------------------------------------------------------
# export


def add_export_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export workflows of a tenant as pydbal bundles",
        description=(
            "A folder gets one file per workflow; a path ending in .json gets one JSON array of "
            "bundles (importable with `pydbal import`)."
        ),
    )
    parser.add_argument("--tenant", required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", nargs="+", dest="ids", metavar="ID", help="workflow ids")
    which.add_argument("--all", action="store_true", help="every workflow of the tenant")
    parser.add_argument("--out", required=True, help="a folder, or a file ending in .json")
    add_dsn_argument(parser)
    add_user_argument(parser)
    parser.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    async def body() -> int:
        dsn = operator_dsn(args)
        out = Path(args.out)
        async with _open_db(dsn) as db:
            tenant = db.tenant(args.tenant, user_id=user_of(args), role="supergod")
            bundles: list[dict[str, Any]] = []
            failed: list[tuple[str, str]] = []
            ids: list[Any] = [] if args.all else list(args.ids)
            if args.all:  # every id exists: read them 100 per statement
                many = await tenant.workflows.export_many(await all_workflow_ids(tenant))
                bundles = [b.model_dump(mode="json", by_alias=True) for b in many]
            for wid in ids:
                try:
                    bundle = await tenant.workflows.export(wid)
                except DBALError as exc:
                    failed.append((wid, exc.message))
                    continue
                bundles.append(bundle.model_dump(mode="json", by_alias=True))
        write_export(out, bundles)
        print(f"exported {len(bundles)} workflow(s) of {args.tenant} to {out}")
        for wid, why in failed:
            print(f"  failed {wid}: {why}", file=sys.stderr)
        return EXIT_FAILED if failed else EXIT_OK

    return run("export", body)


def write_export(out: Path, bundles: list[dict[str, Any]]) -> None:
    """``out`` ending in .json: one JSON array; otherwise a folder with one file per bundle."""
    if out.suffix.lower() == ".json":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(bundles, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return
    out.mkdir(parents=True, exist_ok=True)
    for index, bundle in enumerate(bundles, 1):
        wf = bundle["workflow"]
        name = f"{index:04d}-{_slug(str(wf.get('name') or 'workflow'))}.json"
        (out / name).write_text(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n", "utf-8")


# --------------------------------------------------------------------------------------------
# import


@dataclass
class ImportSummary:
    """How an import went: workflows stored valid / invalid, files refused and why."""

    valid: int = 0
    invalid: int = 0
    files: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    interrupted: str | None = None  # the signal that stopped the import
    not_imported: int = 0  # files left untouched (none of their workflows stored)

    def as_dict(self) -> dict[str, Any]:
        reasons = Counter(_reason_class(r) for _, r in self.refused)
        data = {
            "files": self.files,
            "valid": self.valid,
            "invalid": self.invalid,
            "refused": len(self.refused),
            "refusedReasons": dict(reasons.most_common()),
            "refusedFiles": [{"file": f, "reason": r} for f, r in self.refused],
        }
        if self.interrupted is not None:
            data["interrupted"] = self.interrupted
            data["notImported"] = self.not_imported
        return data


def _reason_class(reason: str) -> str:
    # "not valid JSON: unexpected character: line 1 column 2 (char 1)" -> "not valid JSON"
    return reason.split(":", 1)[0]


def add_import_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import workflow files (pydbal bundles, n8n, MetaBuilder; files, folders, arrays)",
        description=(
            "Imports every workflow found; a file that cannot be imported is refused and the "
            "rest go on. Invalid workflows are stored with their validation errors. Exit code 1 "
            "when some file was refused or some workflow is invalid."
        ),
    )
    parser.add_argument("--tenant", required=True)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (*.json)")
    parser.add_argument(
        "--dry-run", action="store_true", help="parse and validate only; store nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None)
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    add_dsn_argument(parser)
    add_user_argument(parser)
    parser.set_defaults(func=cmd_import)


def _dry_run_file(path: Path, summary: ImportSummary) -> None:
    from pydbal.formats import parse_import
    from pydbal.validation import validate_definition

    definitions = parse_import(path.read_bytes(), source_name=path.name)
    for d in definitions:
        try:
            report = validate_definition(d.nodes, d.edges, d.variables, d.config)
        except DBALError:
            summary.invalid += 1
            continue
        if report.valid:
            summary.valid += 1
        else:
            summary.invalid += 1


def cmd_import(args: argparse.Namespace) -> int:
    async def body() -> int:
        files = expand_paths(args.paths)
        if not files:
            raise CommandError("no files to import", EXIT_USAGE)
        enabled = args.progress if args.progress is not None else sys.stderr.isatty()
        progress = Progress(len(files), enabled=enabled and (args.progress or len(files) >= 10))
        summary = ImportSummary()
        if args.dry_run:
            for path in files:
                summary.files += 1
                try:
                    _dry_run_file(path, summary)
                except DBALError as exc:
                    summary.refused.append((str(path), _reason(exc)))
                except OSError as exc:
                    summary.refused.append((str(path), f"cannot read: {exc.strerror}"))
                progress.step(path.name)
        else:
            dsn = operator_dsn(args)
            # Each file is one transaction (all its workflows or none): a signal stops the
            # import between files, a second one rolls the current file back.
            async with _open_db(dsn) as db, Interrupts() as stop:
                tenant = db.tenant(args.tenant, user_id=user_of(args), role="supergod")
                for index, path in enumerate(files):
                    if stop.signal is not None:
                        summary.interrupted = stop.signal.name
                        summary.not_imported = len(files) - index
                        break
                    try:
                        created = await tenant.workflows.import_many(path)
                    except DBALError as exc:
                        summary.refused.append((str(path), _reason(exc)))
                    except asyncio.CancelledError:
                        if stop.signal is None:
                            raise
                        current = asyncio.current_task()
                        if current is not None:
                            current.uncancel()
                        summary.interrupted = stop.signal.name
                        summary.not_imported = len(files) - index
                        break
                    else:
                        for w in created:
                            if w.validation_status == "valid":
                                summary.valid += 1
                            else:
                                summary.invalid += 1
                    summary.files += 1
                    progress.step(path.name)
                if stop.signal is not None and summary.interrupted is None:
                    summary.interrupted = stop.signal.name
            if summary.interrupted is not None:
                _print_summary(summary, args)
                return stop.exit_code
        _print_summary(summary, args)
        return EXIT_FAILED if summary.refused or summary.invalid else EXIT_OK

    return run("import", body)


def _print_summary(summary: ImportSummary, args: argparse.Namespace) -> None:
    data = summary.as_dict()
    if args.json:
        print(json.dumps({"dryRun": args.dry_run, **data}, indent=2))
        return
    verb = "would store" if args.dry_run else "stored"
    print(
        f"{summary.files} file(s): {verb} {summary.valid} valid and {summary.invalid} invalid "
        f"workflow(s); refused {len(summary.refused)} file(s)"
    )
    if summary.interrupted is not None:
        print(
            f"interrupted by {summary.interrupted}: {summary.not_imported} file(s) not imported "
            "(each file is stored whole or not at all)"
        )
    if summary.refused:
        print("refused, by reason:")
        for reason, count in data["refusedReasons"].items():
            print(f"  {count:4d}  {reason}")
        print("refused files:")
        for name, reason in summary.refused:
            print(f"  {name}: {reason}")


# --------------------------------------------------------------------------------------------
# validate


def add_validate_parser(subparsers: _SubParsers) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="validate workflow files offline (no database); exit 1 if any has errors",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="files or folders (*.json)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="only list workflows with errors"
    )
    parser.set_defaults(func=cmd_validate)


def validate_file(path: Path) -> list[dict[str, Any]]:
    """One entry per workflow of the file (or one ``refused`` entry for the file)."""
    from pydbal.formats import parse_import
    from pydbal.validation import validate_definition

    try:
        definitions = parse_import(path.read_bytes(), source_name=path.name)
    except DBALError as exc:
        return [{"file": str(path), "refused": _reason(exc), "valid": False}]
    except OSError as exc:
        return [{"file": str(path), "refused": f"cannot read: {exc.strerror}", "valid": False}]
    entries = []
    for index, d in enumerate(definitions):
        entry: dict[str, Any] = {"file": str(path), "index": index, "name": d.name}
        try:
            report = validate_definition(d.nodes, d.edges, d.variables, d.config)
        except DBALError as exc:
            entry.update(valid=False, refused=exc.message)
        else:
            entry.update(report.model_dump(mode="json", by_alias=True))
        entries.append(entry)
    return entries


def cmd_validate(args: argparse.Namespace) -> int:
    files = expand_paths(args.files)
    if not files:
        print("pydbal validate: no files", file=sys.stderr)
        return EXIT_USAGE
    entries = [e for path in files for e in validate_file(path)]
    bad = [e for e in entries if not e["valid"]]
    if args.json:
        print(json.dumps(entries, indent=2, ensure_ascii=False))
    else:
        for e in entries:
            if e["valid"] and args.quiet:
                continue
            where = e["file"] if "index" not in e else f"{e['file']}[{e['index']}]"
            label = f" ({e['name']})" if e.get("name") else ""
            if "refused" in e:
                print(f"REFUSED {where}: {e['refused']}")
                continue
            status = "ok     " if e["valid"] else "INVALID"
            counts = f"{len(e['errors'])} error(s), {len(e['warnings'])} warning(s)"
            print(f"{status} {where}{label}: {counts}")
            for issue in e["errors"] + ([] if args.quiet else e["warnings"]):
                print(
                    f"    {issue['severity']:7} {issue['code']} at {issue['path']}: "
                    f"{issue['message']}"
                )
        print(f"{len(entries) - len(bad)} valid, {len(bad)} with errors, {len(files)} file(s)")
    return EXIT_FAILED if bad else EXIT_OK
