"""``advanced-rag db …``: schema migrations of the SQL database (Alembic).

Run ``db upgrade`` as the schema owner when installing or upgrading; the application can then
run with ``audit.create: false`` under a role without DDL rights.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK = 0


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


async def cmd_upgrade(args: argparse.Namespace) -> int:
    from compliance.migrations import upgrade

    from . import _load

    revision = await asyncio.to_thread(upgrade, _load(args.config), args.revision)
    _out(f"database at revision {revision}")
    return EXIT_OK


async def cmd_current(args: argparse.Namespace) -> int:
    from compliance.migrations import current

    from . import _load

    revision = await asyncio.to_thread(current, _load(args.config))
    _out(revision or "not migrated yet (run `advanced-rag db upgrade`)")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from compliance.migrations import history

    for revision, down, doc in history():
        _out(f"{revision}  (after {down or '-'})  {doc}")
    return EXIT_OK


def add_commands(command: Callable[[str, str, Any], argparse.ArgumentParser]) -> None:
    from . import subcommands

    p = command("db", "Schema migrations of the SQL database (Alembic).", None)
    sub = subcommands(p)

    s = sub("upgrade", "Apply schema migrations (run as the schema owner).", cmd_upgrade)
    s.add_argument("revision", nargs="?", default="head", help="target (default: head)")
    sub("current", "Print the revision the database is at.", cmd_current)
    sub("history", "List the revisions.", cmd_history)
