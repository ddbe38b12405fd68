"""What each `deba` subcommand does with its parsed arguments: read and check the params, then
hand over to its stage (or to the execution layer for `run`, `validate` and `preset`)."""

from __future__ import annotations

import sys

from deba_pipeline.core.errors import DebaError

PARAMS_DEFAULT = "params.yaml"
THRESHOLDS_DEFAULT = "results/thresholds.json"  # what dvc.yaml's calibrate stage writes


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
