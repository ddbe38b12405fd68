"""`deba ...`: one subcommand per pipeline stage, plus plugins, validate and preset.

Errors the user can fix print one line and exit 2; `--debug` (or DEBA_DEBUG=1) shows the trace.
"""

from __future__ import annotations

import os
import sys

from deba_pipeline.cli.parser import build_parser
from deba_pipeline.core.errors import DebaError


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import logging

    from deba_pipeline.execution.process import flag, prepare

    try:
        debug, verbose = args.debug or flag("DEBA_DEBUG"), args.verbose or flag("DEBA_VERBOSE")
    except DebaError as exc:
        print(f"deba: error: {exc}", file=sys.stderr)
        return 2
    if verbose:
        os.environ["DEBA_VERBOSE"] = "1"  # for the processes it starts too (torchrun's ranks)
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # libraries'
    # the process as every worker sets up its own; a stage's runs set their threads from params
    prepare(None, logging.DEBUG if verbose else logging.WARNING if args.quiet else logging.INFO)
    try:
        args.func(args)
    except DebaError as exc:
        if debug:
            raise
        print(f"deba: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "deba: interrupted. Finished runs and the last checkpoint are kept: run the same "
            "command (or `dvc repro`) again to resume.",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:  # `deba plugins | head`: the reader has all it wanted
        sys.stderr.close()  # nothing more to say, and Python's own flush would complain
        return 0
    except OSError as exc:  # the machine's, not ours: a file, a folder, the disk
        if debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(
            f"deba: error: {exc.strerror or exc}{where}: check that the path exists, is "
            f"readable and writable, and that the disk has space.",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if debug:
            raise
        print(
            f"deba: error: unexpected {type(exc).__name__}: {exc}. This is a bug in "
            f"deba-pipeline: rerun with --debug for the traceback and report it.",
            file=sys.stderr,
        )
        return 1
    return 0
