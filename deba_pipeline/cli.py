"""`deba ...`: one subcommand per pipeline stage, plus plugins, validate and preset.

Errors the user can fix print one line and exit 2; `--debug` (or DEBA_DEBUG=1) shows the trace.
"""
from __future__ import annotations

import argparse
import os
import sys

from .errors import DebaError


def cmd_plugins(args) -> None:
    from . import plugins
    for path in args.plugin:
        plugins.load_plugin_file(path)
    for kind in plugins.KINDS:
        found = plugins.registry(kind)
        print(f"{plugins.PLURAL[kind]}:")
        for name, (_, source) in sorted(found.items()):
            print(f"  {name:24s} {source}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deba", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plugins", help="list registered signals, rules and policies")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE",
                   help="also load this plugin file (repeatable)")
    p.set_defaults(func=cmd_plugins)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("DEBA_DEBUG") not in (None, "", "0")
    try:
        args.func(args)
    except DebaError as exc:
        if debug:
            raise
        print(f"deba: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
