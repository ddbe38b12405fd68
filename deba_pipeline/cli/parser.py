"""The `deba` command line: its subcommands, their arguments and help."""

from __future__ import annotations

import argparse

from deba_pipeline import __version__
from deba_pipeline.cli.commands import (
    PARAMS_DEFAULT,
    THRESHOLDS_DEFAULT,
    cmd_ablate,
    cmd_aggregate,
    cmd_calibrate,
    cmd_plugins,
    cmd_predict,
    cmd_preset,
    cmd_profile,
    cmd_run,
    cmd_steptime,
    cmd_train,
    cmd_validate,
)

DESCRIPTION = "`deba ...`: one subcommand per pipeline stage, plus plugins, validate and preset."
PARAMS_HELP = "the params file to read (default: %(default)s)"
DEBUG_HELP = "show the Python traceback of an error (also DEBA_DEBUG=1)"
VERBOSE_HELP = "show debug lines and the libraries' own, e.g. Ray's (also DEBA_VERBOSE=1)"
QUIET_HELP = "show only warnings and errors, not each finished run"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deba", description=DESCRIPTION)
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
        default=THRESHOLDS_DEFAULT,
        help="calibrated thresholds to read, where deba.thresholds is calibrated "
        "(default: %(default)s, the calibrate stage's)",
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
