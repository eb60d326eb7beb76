"""``pydbal export`` and ``pydbal import``: workflow files out of and into a tenant.

Both act through the workflow API as ``--user`` with role supergod, so the audit log names the
operator. Offline validation of the same files is ``pydbal validate`` (:mod:`pydbal.cli.validate`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydbal.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Interrupts,
    SubParsers,
    add_options,
    all_workflows,
    open_db,
    operator_dsn,
    run,
    user_of,
)
from pydbal.cli.validate import expand_paths, reason, validate_file
from pydbal.errors import DBALError

# --- helpers ---------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr (only when enabled)."""

    def __init__(self, total: int, *, enabled: bool, out: TextIO | None = None) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.out = out if out is not None else sys.stderr
        self.done = 0
        self._last = 0.0

    def step(self, label: str = "") -> None:
        """One item done; redraws the bar at most every 0.1 s, and at the last item."""
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
    """A file-name-safe form of a workflow name (at most 60 characters)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug[:60] or "workflow"


# --- export ----------------------------------------------------------------------------------


def add_export_parser(subparsers: SubParsers) -> None:
    """``pydbal export --tenant T (--id ID… | --all) --out PATH``."""
    parser = subparsers.add_parser(
        "export",
        help="export workflows of a tenant as pydbal bundles",
        description=(
            "A folder gets one file per workflow; a path ending in .json gets one JSON array of "
            "bundles (importable with `pydbal import`). Reads as --user with role supergod. "
            "Exit 0 all exported, 1 some id could not be exported (the rest are), 2 usage error "
            "or no database."
        ),
    )
    parser.add_argument("--tenant", required=True, help="the tenant id")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", nargs="+", dest="ids", metavar="ID", help="workflow ids")
    which.add_argument("--all", action="store_true", help="every workflow of the tenant")
    parser.add_argument("--out", required=True, help="a folder, or a file ending in .json")
    add_options(parser, cmd_export, user=True)


def cmd_export(args: argparse.Namespace) -> int:
    """Export and write the bundles; exit 0, 1 (some id failed) or 2 (usage, no database)."""

    async def body() -> int:
        dsn = operator_dsn(args)
        out = Path(args.out)
        async with open_db(dsn) as db:
            tenant = db.tenant(args.tenant, user_id=user_of(args), role="supergod")
            bundles: list[dict[str, Any]] = []
            failed: list[tuple[str, str]] = []
            ids: list[Any] = [] if args.all else list(args.ids)
            if args.all:  # every id exists: read them 100 per statement
                every = [str(w.id) for w in await all_workflows(tenant)]
                many = await tenant.workflows.export_many(every)
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


# --- import ----------------------------------------------------------------------------------


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
        """The summary as ``--json`` prints it (refusals also counted by kind)."""
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


def _reason_class(why: str) -> str:
    """The kind of a refusal: ``"not valid JSON: unexpected …"`` → ``"not valid JSON"``."""
    return why.split(":", 1)[0]


def add_import_parser(subparsers: SubParsers) -> None:
    """``pydbal import --tenant T PATH…``."""
    parser = subparsers.add_parser(
        "import",
        help="import workflow files (pydbal bundles, n8n, MetaBuilder; files, folders, arrays)",
        description=(
            "Imports every workflow found; a file that cannot be imported is refused and the "
            "rest go on. Invalid workflows are stored with their validation errors. Each file is "
            "stored whole or not at all; SIGINT/SIGTERM stop the import after the current file "
            "(a second signal rolls it back). Writes as --user with role supergod. Exit 0 no "
            "file refused and every workflow valid, 1 some file was refused or some workflow is "
            "invalid, 2 usage error, no files or no database, 128 + the signal when a signal "
            "stopped it."
        ),
    )
    parser.add_argument("--tenant", required=True, help="the tenant id")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (*.json)")
    parser.add_argument(
        "--dry-run", action="store_true", help="parse and validate only; store nothing"
    )
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show a progress bar on stderr (default: on a terminal, from 10 files on)",
    )
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_options(parser, cmd_import, json="the summary", user=True)


def _dry_run_file(path: Path, summary: ImportSummary) -> None:
    """Count a file's workflows as valid / invalid, or the file as refused, storing nothing."""
    for entry in validate_file(path):
        if "index" not in entry:  # the file itself was refused
            summary.refused.append((str(path), entry["refused"]))
        elif entry["valid"]:
            summary.valid += 1
        else:
            summary.invalid += 1


def cmd_import(args: argparse.Namespace) -> int:
    """Import the files (or only validate them with --dry-run) and print the summary; exit 0,
    1 (refused files or invalid workflows), 2 (usage, no files, no database) or 128 + signal."""

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
                _dry_run_file(path, summary)
                progress.step(path.name)
        else:
            dsn = operator_dsn(args)
            # Each file is one transaction (all its workflows or none): a signal stops the
            # import between files, a second one rolls the current file back.
            async with open_db(dsn) as db, Interrupts() as stop:
                tenant = db.tenant(args.tenant, user_id=user_of(args), role="supergod")
                for index, path in enumerate(files):
                    if stop.signal is not None:
                        summary.interrupted = stop.signal.name
                        summary.not_imported = len(files) - index
                        break
                    try:
                        created = await tenant.workflows.import_many(path)
                    except DBALError as exc:
                        summary.refused.append((str(path), reason(exc)))
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
    """The import summary as text or (``--json``) JSON, on stdout."""
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
