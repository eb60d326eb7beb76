"""docs/cli.md and the argument parser agree: every command and option documented exists, every
one that exists is documented, and the documented exit codes are the code's.

The commands table of docs/cli.md has one row per command (``locks list``, ``locks sweep``, …)
whose first cell is its usage line in backticks; the test walks ``build_parser()`` down to its
leaf commands and compares, per command, the option strings and positional arguments.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pydbal.cli import EPILOG, build_parser
from pydbal.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
OPTION = re.compile(r"(?<![\w-])(--?[a-z][a-z-]*)")


def parser_commands() -> dict[str, tuple[set[str], set[str]]]:
    """``{"locks list": ({"--tenant", "--json", …}, {"WORKFLOW", …})}`` from the parser."""
    found: dict[str, tuple[set[str], set[str]]] = {}

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            for name, sub in subs[0].choices.items():
                walk(sub, [*path, name])
            return
        options: set[str] = set()
        positionals: set[str] = set()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                options.update(action.option_strings)
            else:
                positionals.add(str(action.metavar or action.dest))
        found[" ".join(path)] = (options, positionals)

    walk(build_parser(), [])
    return found


def doc_rows() -> list[list[str]]:
    """The cells of the commands table (rows after the header whose first cell is code)."""
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append(cells)
    return rows


def doc_commands() -> dict[str, tuple[set[str], str]]:
    """``{"locks list": ({"--tenant", …}, "usage text")}`` from docs/cli.md."""
    known = parser_commands()
    documented: dict[str, tuple[set[str], str]] = {}
    for cells in doc_rows():
        usage = cells[0].strip("`")
        words = usage.split()
        name = next((" ".join(words[:n]) for n in (2, 1) if " ".join(words[:n]) in known), words[0])
        assert name not in documented, f"docs/cli.md documents {name!r} twice"
        rest = usage[len(name) :]
        documented[name] = (set(OPTION.findall(rest)), rest)
    return documented


def test_every_command_is_documented_and_every_documented_command_exists() -> None:
    assert sorted(doc_commands()) == sorted(parser_commands())


@pytest.mark.parametrize("command", sorted(parser_commands()))
def test_documented_options_are_the_parsers(command: str) -> None:
    options, positionals = parser_commands()[command]
    documented, usage = doc_commands()[command]
    assert documented == options, (
        f"{command}: only in docs/cli.md {sorted(documented - options)}, "
        f"only in the parser {sorted(options - documented)}"
    )
    for name in positionals:
        assert name in usage, f"{command}: positional {name} is not in its usage line {usage!r}"


def test_documented_exit_codes_are_the_codes() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE) == (0, 1, 2)
    for code, meaning in ((0, "all went well"), (1, "some items failed"), (2, "usage error")):
        assert f"**{code}** {meaning}" in text
        assert f"{code} {meaning}" in EPILOG  # what `pydbal --help` says
    assert "128 + the signal" in text and "128 + the signal" in EPILOG


def test_every_command_help_states_its_exit_codes() -> None:
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        assert "Exit 0" in (sub.description or ""), f"`pydbal {name} --help` names no exit codes"


BOGUS_DSN = "postgresql://nobody@127.0.0.1:1/nowhere"


def test_every_database_command_exits_2_when_the_database_cannot_be_reached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/cli.md: "2 … no database (… the database cannot be reached …)" for every command
    that takes --dsn — migrate, distribute and demo included (they once ended in a traceback)."""
    from pydbal.cli import main

    workflow = tmp_path / "w.json"
    workflow.write_text("{}")
    argvs = {
        "migrate": ["migrate"],
        "distribute": ["distribute"],
        "status": ["status"],
        "export": ["export", "--tenant", "t", "--all", "--out", str(tmp_path / "out")],
        "import": ["import", "--tenant", "t", str(workflow)],
        "locks list": ["locks", "list", "--tenant", "t"],
        "locks sweep": ["locks", "sweep"],
        "stats": ["stats", "--tenant", "t", "w"],
        "partitions list": ["partitions", "list"],
        "partitions maintain": ["partitions", "maintain"],
        "purge": ["purge", "--older-than", "30d"],
        "maintenance run": ["maintenance", "run"],
        "maintenance schedule": ["maintenance", "schedule"],
        "maintenance unschedule": ["maintenance", "unschedule"],
        "retention show": ["retention", "show"],
        "retention set": ["retention", "set", "--audit", "30d"],
        "analysts grant": ["analysts", "grant", "someone", "t"],
        "analysts revoke": ["analysts", "revoke", "someone", "t"],
        "analysts list": ["analysts", "list"],
        "sql": ["sql", "SELECT 1"],
        "demo": ["demo"],
    }
    assert sorted(argvs) == sorted(c for c in parser_commands() if c != "validate")
    for command, argv in argvs.items():
        assert main([*argv, "--dsn", BOGUS_DSN]) == EXIT_USAGE, command
        assert "cannot connect to the database" in capsys.readouterr().err, command
