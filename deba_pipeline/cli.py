"""`deba ...`: one subcommand per pipeline stage, plus plugins, validate and preset.

Errors the user can fix print one line and exit 2; `--debug` (or DEBA_DEBUG=1) shows the trace.
"""

from __future__ import annotations

import argparse
import os
import sys

from deba_pipeline import __version__
from deba_pipeline.core.errors import DebaError


def cmd_plugins(args) -> None:
    from pathlib import Path

    import yaml

    from deba_pipeline.core import plugins
    from deba_pipeline.core.errors import ConfigError

    named, params = [], {}  # the project's own plugin files, as params.yaml names them
    if Path(args.params).is_file():
        try:
            params = yaml.safe_load(Path(args.params).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{args.params}: not valid YAML: {str(exc).splitlines()[0]}"
            ) from None
        deba = params.get("deba") if isinstance(params, dict) else None
        named = (deba.get("plugins") if isinstance(deba, dict) else None) or []
        if not isinstance(named, list):
            raise ConfigError(
                f"{args.params}: `deba.plugins` = {named!r} is not allowed: it "
                f"must be a list of plugin files in plugins/."
            )
    for path in list(args.plugin) + list(named):
        plugins.load_plugin_file(path)
    for kind in plugins.KINDS:
        found = plugins.registry(kind)
        print(f"{plugins.PLURAL[kind]}:")
        for name, (_, source) in sorted(found.items()):
            print(f"  {name:24s} {source}")
    folders = (
        (params.get("data") or {}).get("folders")
        if named is not None and isinstance(params, dict) and isinstance(params.get("data"), dict)
        else None
    )
    if isinstance(folders, dict):
        print(f"image folders (data.folders of {args.params}):" + ("" if folders else " none"))
        for name, path in sorted(folders.items()):
            print(f"  {name:24s} {path}")
    models = plugins.project_models()
    print("models (timm, registered by plugin files):" + ("" if models else " none"))
    for name, source in sorted(models.items()):
        print(f"  {name:24s} {source}")


def _params(args):
    from deba_pipeline.config import load_params
    from deba_pipeline.execution.preflight import preflight

    cfg = load_params(args.params)
    preflight(cfg, args.params)
    return cfg


def _archs(args, cfg) -> list:
    """The architectures `--arch` names (each one of study.archs), else all of study.archs."""
    for arch in args.arch or []:
        if arch not in cfg.study.archs:
            from deba_pipeline.core.errors import fail

            fail(
                "--arch", arch, f"one of study.archs in {args.params}: {', '.join(cfg.study.archs)}"
            )
    return list(dict.fromkeys(args.arch)) if args.arch else list(cfg.study.archs)


def cmd_profile(args) -> None:
    from deba_pipeline.stages import profile

    cfg = _params(args)
    profile.run(cfg, _archs(args, cfg), args.out, args.stability)


def cmd_calibrate(args) -> None:
    from deba_pipeline.stages import calibrate

    calibrate.run(_params(args), args.runs, args.out)


def cmd_train(args) -> None:
    from deba_pipeline.stages import train

    cfg = _params(args)
    train.run(cfg, _archs(args, cfg), args.out, args.profiles, args.thresholds)


def cmd_ablate(args) -> None:
    from deba_pipeline.stages import ablate

    cfg = _params(args)
    ablate.run(cfg, _archs(args, cfg), args.out, args.thresholds)


def cmd_steptime(args) -> None:
    from deba_pipeline.stages import steptime

    cfg = _params(args)
    steptime.run(cfg, _archs(args, cfg), args.runs, args.out)


def cmd_predict(args) -> None:
    from deba_pipeline.stages import predict

    cfg = _params(args)
    predict.run(cfg, _archs(args, cfg), args.runs, args.steptime, args.out)
    print(f"predicted each strategy of study.methods into {args.out}")


def cmd_run(args) -> None:
    from deba_pipeline.execution import named_run

    status = named_run.run(_params(args), args.name, args.thresholds)
    if status:
        raise SystemExit(status)


def cmd_aggregate(args) -> None:
    from pathlib import Path

    from omegaconf import OmegaConf

    from deba_pipeline.config import Params, load_params
    from deba_pipeline.stages import aggregate

    if Path(args.params).is_file():
        cfg = load_params(args.params)
    elif args.params != PARAMS_DEFAULT:  # named on purpose: the defaults would answer silently
        raise DebaError(
            f"--params {args.params} does not exist: give the params file the runs "
            f"were made with, or leave --params out to read {PARAMS_DEFAULT} (the "
            f"defaults where there is none)."
        )
    else:
        cfg = OmegaConf.structured(Params)
    metrics = aggregate.run(cfg, args.runs, args.out, args.compare, args.steptime, args.prediction)
    print(f"aggregated {metrics['runs']} run records into {args.out}/REPORT.md")


def cmd_validate(args) -> None:
    from deba_pipeline.config import load_params
    from deba_pipeline.config.presets import resolve_preset
    from deba_pipeline.execution.preflight import check

    if (args.device or args.utilization is not None) and not args.estimate:
        raise DebaError("--device and --utilization go with --estimate: add it.")
    for path in args.files or [args.params]:
        print(check(path), flush=True)
        if args.estimate:
            from deba_pipeline.execution.devices import flops_estimate
            from deba_pipeline.execution.estimate import estimate

            cfg = load_params(resolve_preset(path))
            heard = lambda line: print(f"deba: {line}", file=sys.stderr, flush=True)  # noqa: E731
            print(
                flops_estimate(cfg, args.device, args.utilization, heard)
                if args.device
                else estimate(cfg, progress=heard)
            )


def cmd_preset(args) -> None:
    from deba_pipeline.config.presets import diff
    from deba_pipeline.execution.preflight import use_preset

    print(
        diff(args.name, args.params)
        if args.diff
        else use_preset(args.name, args.params, args.force)
    )


PARAMS_DEFAULT = "params.yaml"


PARAMS_HELP = "the params file to read (default: %(default)s)"
DEBUG_HELP = "show the Python traceback of an error (also DEBA_DEBUG=1)"
VERBOSE_HELP = "show debug lines and the libraries' own, e.g. Ray's (also DEBA_VERBOSE=1)"
QUIET_HELP = "show only warnings and errors, not each finished run"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deba", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "plugins", help="list the registered signals, rules, policies, datasets and project models"
    )
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE",
        help="also load this plugin file (repeatable)",
    )
    p.add_argument(
        "--params",
        default=PARAMS_DEFAULT,
        help="load the plugin files its deba.plugins names (default: %(default)s)",
    )
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    p.set_defaults(func=cmd_plugins)

    def stage(name, func, help, arch=False, params_help=PARAMS_HELP, **paths):
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--params", default=PARAMS_DEFAULT, help=params_help)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        p.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
        )
        p.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP
        )
        if arch:
            p.add_argument(
                "--arch",
                action="append",
                metavar="ARCH",
                help="only this one of study.archs (repeatable; default: all)",
            )
        for option, what in paths.items():  # dvc.yaml names every path: its one home
            p.add_argument(f"--{option}", required=True, metavar="PATH", help=what)
        p.set_defaults(func=func)
        return p

    stage(
        "profile",
        cmd_profile,
        "fixed-batch profile runs of the study's architectures",
        arch=True,
        out="folder for the run records",
        stability="folder for the stability summaries, ARCH.json",
    )
    stage(
        "calibrate",
        cmd_calibrate,
        "thresholds from the profile runs",
        runs="folder of profile run records",
        out="thresholds file to write",
    )
    stage(
        "train",
        cmd_train,
        "fixed and DEBA runs of the study's architectures",
        arch=True,
        out="folder for the run records",
        profiles="profile records whose fixed runs are reused",
        thresholds="calibrated thresholds to read",
    )
    stage(
        "ablate",
        cmd_ablate,
        "DEBA ablation variants of the study's architectures",
        arch=True,
        out="folder for the run records",
        thresholds="calibrated thresholds to read",
    )
    stage(
        "steptime",
        cmd_steptime,
        "the step-time tables of the study's architectures",
        arch=True,
        runs="run records whose batch sizes the tables must cover",
        out="folder for the tables, ARCH.json",
    )
    stage(
        "predict",
        cmd_predict,
        "what each strategy will save, from the profile runs alone",
        arch=True,
        runs="folder of profile run records",
        steptime="folder for the step-time tables over the sizes a strategy may reach",
        out="prediction file to write",
    )
    p = stage("run", cmd_run, "one run of the study by name (under torchrun: one rank of it)")
    p.add_argument("name", help="ARCH/DATASET/METHOD/SEED, as a stage prints it")
    p.add_argument(
        "--thresholds",
        metavar="PATH",
        help="calibrated thresholds to read, where "
        "deba.thresholds is calibrated (dvc.yaml's: results/thresholds.json)",
    )
    p = stage(
        "aggregate",
        cmd_aggregate,
        "tables, figures and REPORT.md from run records",
        runs="folder searched for run records",
        out="folder for tables, figures, REPORT.md and metrics.json",
    )
    p.add_argument(
        "--steptime",
        default="",
        metavar="PATH",
        help="folder of step-time tables "
        "for the modelled times (default: none, measured times only)",
    )
    p.add_argument(
        "--prediction",
        default="",
        metavar="FILE",
        help="the predict stage's file, set beside the outcomes (default: none)",
    )
    p.add_argument(
        "--compare",
        metavar="FILE",
        help="printed paper values to check instead of the paper's own tables",
    )
    p = stage("validate", cmd_validate, "validate params files and count the runs they make")
    p.add_argument("files", nargs="*", help="params files or preset names (default: --params)")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="time one short epoch per "
        "architecture here and print the device-hours and wall-clock of the study",
    )
    p.add_argument(
        "--device",
        metavar="NAME",
        help="with --estimate: estimate for this GPU "
        "instead (h200, h100, h100-pcie, a100, a10, l4, rtx4090) from each model's "
        "FLOPs and the device's documented peak",
    )
    p.add_argument(
        "--utilization",
        type=float,
        metavar="SHARE",
        help="with --device: the share of the peak a step sustains (default 0.4)",
    )
    p = stage(
        "preset",
        cmd_preset,
        "write a preset from pipelines/ as the complete params file",
        params_help="the params file to write (default: %(default)s)",
    )
    p.add_argument("name", help="preset name (quick, paper, micro) or a YAML path")
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite a params file with uncommitted changes (kept as .bak)",
    )
    p.add_argument(
        "--diff",
        action="store_true",
        help="only show what the preset would change in the params file",
    )
    return parser


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


if __name__ == "__main__":
    sys.exit(main())
