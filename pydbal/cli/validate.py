"""``pydbal validate``: workflow files validated offline, and the reading of workflow files that
``pydbal import`` shares (:func:`expand_paths`, :func:`validate_file`, :func:`reason`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydbal.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, SubParsers, add_options
from pydbal.errors import DBALError


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


def reason(exc: DBALError) -> str:
    """Why a file was refused: the error's ``details.reason``, else its message."""
    why = exc.details.get("reason") if isinstance(exc.details, dict) else None
    return str(why or exc.message)


def add_validate_parser(subparsers: SubParsers) -> None:
    """``pydbal validate FILE…``."""
    parser = subparsers.add_parser(
        "validate",
        help="validate workflow files offline (no database); exit 1 if any has errors",
        description="Reads every workflow of the files and folders given (every shape "
        "`pydbal import` accepts) and validates it as the database would, without one. Exit 0 "
        "all valid, 1 a workflow has errors or a file is refused, 2 usage error or no files.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="files or folders (*.json)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="only list workflows with errors"
    )
    add_options(parser, cmd_validate, dsn=None)


def validate_file(path: Path) -> list[dict[str, Any]]:
    """One entry per workflow of the file (or one ``refused`` entry for the file)."""
    from pydbal.formats import parse_import
    from pydbal.validation import validate_definition

    try:
        definitions = parse_import(path.read_bytes(), source_name=path.name)
    except DBALError as exc:
        return [{"file": str(path), "refused": reason(exc), "valid": False}]
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
    """Print a report per workflow; exit 0 all valid, 1 errors or a refused file, 2 no files."""
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
