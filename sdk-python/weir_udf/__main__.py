"""`python -m weir_udf build module.py [-o out.wasm]`, `python -m weir_udf describe module.py`."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from ._build import BuildError, build, load_module


def _describe(path: str) -> int:
    _, functions = load_module(pathlib.Path(path).resolve())
    specs = [
        {
            "name": f.name,
            "kind": f.kind,
            "signature": f.signature(),
            "deterministic": f.deterministic,
        }
        for f in functions
    ]
    print(json.dumps(specs, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weir_udf", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    build_verb = verbs.add_parser("build", help="build a Python module into a component")
    build_verb.add_argument("module", help="the .py file that defines the functions")
    build_verb.add_argument("-o", "--output", help="the component to write (default: module.wasm)")
    describe_verb = verbs.add_parser("describe", help="print each function's SQL signature")
    describe_verb.add_argument("module")
    args = parser.parse_args(argv)
    try:
        if args.verb == "describe":
            return _describe(args.module)
        out = build(args.module, args.output)
        print(out)
        return 0
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
