"""`python -m core.weights list | fetch NAME... | verify NAME...`: one line per file, one clear
error line (and its exit code) per failure, never a traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..errors import Cancelled, StudioError
from ..registry import Registry
from .fetching import DEFAULT_REGISTRY, fetch, list_rows, raise_for_reports, verify


def _add_registry_option(parser: argparse.ArgumentParser) -> None:
    # On the main parser and on every command, so --registry works before or after the command;
    # SUPPRESS keeps a command's parser from overwriting a value given before it.
    parser.add_argument("--registry", type=Path, default=argparse.SUPPRESS,
                        help="models.json to use (default: the project's)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.weights", description="Fetch, verify and list model weights.")
    _add_registry_option(p)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download the files of one or more models, then verify them")
    f.add_argument("names", nargs="+", metavar="NAME")
    f.add_argument("--no-optional", action="store_true", help="skip files marked optional")
    lst = sub.add_parser("list", help="every model, its kind, and whether it can run here")
    v = sub.add_parser("verify", help="check size / sha256 / git blob id of a model's files")
    v.add_argument("names", nargs="+", metavar="NAME")
    for command in (f, lst, v):
        _add_registry_option(command)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        registry = Registry.load(vars(args).get("registry", DEFAULT_REGISTRY))
        if args.command == "list":
            return _cmd_list(registry)
        if args.command == "fetch":
            return _cmd_fetch(registry, args.names, include_optional=not args.no_optional)
        return _cmd_verify(registry, args.names)
    except StudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume.", file=sys.stderr)
        return Cancelled.exit_code


def _cmd_list(registry: Registry) -> int:
    rows = list_rows(registry)
    if not rows:
        print(f"{registry.source} lists no models.")
        return 0
    wn = max(len("NAME"), *(len(r["name"]) for r in rows))
    wk = max(len("KIND"), *(len(r["kind"]) for r in rows))
    print(f"{'NAME':<{wn}}  {'KIND':<{wk}}  STATUS")
    for r in rows:
        print(f"{r['name']:<{wn}}  {r['kind']:<{wk}}  {r['status']}")
    return 0


def _cmd_fetch(registry: Registry, names: Sequence[str], include_optional: bool) -> int:
    first_error: StudioError | None = None
    for name in names:
        try:
            reports = fetch(registry, name, bar=True, include_optional=include_optional)
        except StudioError as err:
            print(f"error: {err}", file=sys.stderr)
            first_error = first_error or err
            continue
        for r in reports:
            print(f"{name}: {r.role}: {r.state} {r.path}" + (f" ({r.detail})" if r.detail else ""))
    return first_error.exit_code if first_error else 0


def _cmd_verify(registry: Registry, names: Sequence[str]) -> int:
    first_error: StudioError | None = None
    for name in names:
        try:
            entry = registry.get(name)
            reports = verify(registry, name)
            for r in reports:
                print(f"{name}: {r.role}: {r.state} {r.path}" + (f" ({r.detail})" if r.detail else ""))
            raise_for_reports(entry, reports)
        except StudioError as err:
            print(f"error: {err}", file=sys.stderr)
            first_error = first_error or err
    return first_error.exit_code if first_error else 0
