"""Command line: list, inspect and verify model layouts (see `core.models`)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..errors import CheckpointError, StudioError
from . import family_of, inspectable_names


def _inspect(name: str, as_json: bool) -> int:
    start = time.perf_counter()
    entries = family_of(name).inspect_entries(name)
    elapsed = time.perf_counter() - start
    if as_json:
        json.dump({"entries": [[k, list(shape), dtype] for k, shape, dtype in entries]}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    total = 0
    for key, shape, dtype in entries:
        n = 1
        for s in shape:
            n *= s
        total += n
        print(f"{key}\t{list(shape)}\t{dtype}")
    print(f"# {name}: {len(entries)} entries, {total:,} elements (built on the meta device in {elapsed:.2f} s)")
    return 0


def _verify(name: str, path: str, as_json: bool) -> int:
    verdict = family_of(name).verify_file(name, path)
    if as_json:
        json.dump({"ok": verdict.ok, "kind": verdict.kind, "identified": verdict.identified,
                   "message": verdict.message, "missing": verdict.missing, "unexpected": verdict.unexpected,
                   "wrong_shape": verdict.wrong_shape}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(verdict.message)
    return 0 if verdict.ok else CheckpointError.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="names that can be inspected / verified")
    p_inspect = sub.add_parser("inspect", help="state-dict entries (upstream keys, shapes, dtypes) of a model")
    p_inspect.add_argument("name")
    p_inspect.add_argument("--json", action="store_true", help='print {"entries": [[key, shape, dtype], ...]}')
    p_verify = sub.add_parser("verify", help="check a checkpoint file (full or camera-only) against a model")
    p_verify.add_argument("name")
    p_verify.add_argument("file")
    p_verify.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print("\n".join(inspectable_names()))
            return 0
        if args.command == "inspect":
            return _inspect(args.name, args.json)
        return _verify(args.name, args.file, args.json)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
