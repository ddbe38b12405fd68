"""What a params file asks of this machine: the checks that need the registries (timm names,
plugins) and the devices, the runs it makes, and a preset written out once it passes them.
`deba validate paper`, `deba preset quick`"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from omegaconf import OmegaConf

from deba_pipeline.config import deba_groups, load_params
from deba_pipeline.config.presets import HEADER, resolve_preset
from deba_pipeline.core.errors import ConfigError, DebaError
from deba_pipeline.engine.files import write_text
from deba_pipeline.engine.spec import PLUGIN_DIR
from deba_pipeline.execution.study import resolve_thresholds


def _check_device(train, source, here=True) -> None:
    """`here`: the runs train on this machine (the local backend), so its devices must do."""
    from deba_pipeline.engine.ddp import resolve_device

    try:
        device = resolve_device(train.device)
    except DebaError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if here and train.processes > 1:
        import torch

        cuda = device.type == "cuda"
        present = torch.cuda.device_count() if cuda else os.cpu_count()
        if train.processes > present:
            raise ConfigError(
                f"{source}: `train.processes` = {train.processes} is not allowed here: this "
                f"machine has {present} {'GPUs' if cuda else 'CPU cores'}, one per process. "
                f"Lower it to at most {present}, or spread the run over machines (README: "
                f'"One run on many GPUs").'
            )
    if train.sync_batchnorm and train.processes > 1 and device.type == "cpu":
        raise ConfigError(
            f"{source}: `train.sync_batchnorm` = true is not allowed here: "
            f"train.device = {train.device!r} is the CPU on this machine, and "
            f"PyTorch's SyncBatchNorm runs on GPUs only. Set it to false "
            f"(BatchNorm keeps its statistics per rank) or train on GPUs."
        )
    if train.precision == "bf16" and device.type == "cpu":  # measured: NaN gradients by epoch 3
        raise ConfigError(
            f"{source}: `train.precision` = 'bf16' is not allowed on the CPU: "
            f"it must be fp32 there (bf16 autocast on the CPU is slow, and its "
            f"gradients turned NaN within 3 epochs of the micro study)."
        )


def preflight(cfg, source="params.yaml") -> None:
    """Everything that can be known wrong before training: names, plugins, options."""
    from deba_pipeline.core import plugins
    from deba_pipeline.core.scheduler import DEBAScheduler
    from deba_pipeline.engine.models import check_arch

    plugin_dir = (Path.cwd() / PLUGIN_DIR).resolve()
    for path in cfg.deba.plugins:
        if not Path(path).resolve().is_relative_to(plugin_dir):
            raise ConfigError(
                f"{source}: `deba.plugins`: {path!r} is not in {PLUGIN_DIR}/: the "
                f"stages that train depend on {PLUGIN_DIR}/, so DVC would not see "
                f"an edit to a file elsewhere. Move the file into {PLUGIN_DIR}/."
            )
        try:
            plugins.load_plugin_file(path)
        except DebaError as exc:
            raise ConfigError(f"{source}: `deba.plugins`: {exc}") from None
    for arch in cfg.study.archs:
        try:
            check_arch(arch)
        except ConfigError as exc:
            raise ConfigError(f"{source}: `study.archs`: {exc}") from None
    from deba_pipeline.config.validation import check_dataset_names

    check_dataset_names(cfg, f"{source}: ")  # again: the plugin files are loaded now
    for dataset in dict.fromkeys(list(cfg.study.datasets) + [cfg.ablate.dataset]):
        if dataset in cfg.data.folders:  # its layout now, not after the first runs trained
            from deba_pipeline.engine.datasets.folders import check_folder

            try:
                check_folder(cfg.data.folders[dataset])
            except DebaError as exc:
                raise ConfigError(f"{source}: `data.folders.{dataset}`: {exc}") from None
    if cfg.ablate.variants and cfg.ablate.dataset not in cfg.study.datasets:
        raise ConfigError(
            f"{source}: `ablate.dataset` = {cfg.ablate.dataset!r} is not in "
            f"study.datasets {list(cfg.study.datasets)}: the ablations are compared "
            f"against that dataset's fixed runs; add it or change ablate.dataset."
        )
    _check_device(
        cfg.train, source, here=cfg.execution.backend == "local" and "LOCAL_RANK" not in os.environ
    )  # under torchrun: the machines' devices
    for where, deba in deba_groups(cfg).items():
        try:  # the real scheduler: plugin names, their options and the initial batch
            DEBAScheduler(batch_size=cfg.train.batch_size, config=deba)
        except DebaError as exc:
            raise ConfigError(f"{source}: `{where}`: {exc}") from None
    for where, deba in deba_groups(cfg).items():  # the runs' own check, before any trains
        if deba.thresholds == "paper":
            for arch in cfg.study.archs:
                try:
                    resolve_thresholds(deba, arch, None, None)
                except ConfigError as exc:
                    raise ConfigError(f"{source}: `{where}`: {exc}") from None


def count_runs(cfg) -> dict:
    """Runs each stage records, and how many fixed runs the train stage takes from profiling."""
    s = cfg.study
    archs, datasets = len(s.archs), len(s.datasets)
    reused = (
        archs * datasets * len(set(s.seeds) & set(s.profile_seeds)) if s.reuse_profile_runs else 0
    )
    counts = {
        "profile": archs * datasets * len(s.profile_seeds),
        "train": archs * datasets * len(s.seeds) * (1 + len(s.methods)),
        "ablate": archs * len(cfg.ablate.variants) * len(s.seeds),
        "train_reused_from_profile": reused,
    }
    counts["steptime"] = archs * datasets
    counts["trained"] = counts["profile"] + counts["train"] - reused + counts["ablate"]
    return counts


def check(name: str) -> str:
    path = resolve_preset(name)
    cfg = load_params(path)
    preflight(cfg, str(path))
    c = count_runs(cfg)
    reuse = (
        f"({c['train_reused_from_profile']} fixed runs reused from profiling)"
        if cfg.study.reuse_profile_runs
        else "(fixed baselines trained apart from profiling)"
    )
    lines = [
        f"{path}: valid. {c['profile']} profile runs, {c['train']} train records {reuse}, "
        f"{c['ablate']} ablation runs: {c['trained']} runs to train, "
        f"{cfg.train.epochs} epochs each; {c['steptime']} step-time tables."
    ]
    return "\n".join(lines + [f"warning: {line}" for line in advice(cfg)])


FEW_STEPS = 4  # steps an epoch below which the per-epoch signals rest on too few steps
DIGITS = 1797  # scikit-learn's digits


def known_train_size(dataset: str, data) -> int | None:
    """The training samples of a built-in dataset, without loading it; None for others."""
    sizes = {
        "digits": lambda: DIGITS - int(round(DIGITS * data.test_fraction)),
        "synthetic": lambda: data.synthetic.train_size,
        "cifar10": lambda: 50_000,
        "cifar100": lambda: 50_000,
    }
    return sizes[dataset]() if dataset in sizes else None


def advice(cfg) -> list:
    """Settings that are valid but leave the rule little to do, one line each naming the
    setting where it is set (a group inheriting deba's value is not named again): too few
    epochs for a decision on a full window that takes effect, a max_batch beyond the training
    set, a batch the rule may reach that leaves fewer than FEW_STEPS steps an epoch, more
    threads than cores."""
    lines, epochs, base = [], cfg.train.epochs, cfg.deba
    sizes = {d: known_train_size(d, cfg.data) for d in cfg.study.datasets}
    for name, group in deba_groups(cfg).items():

        def own(*keys, name=name, group=group):
            return name == "deba" or any(group[k] != base[k] for k in keys)

        window = 0 if group.window == "full" else group.window
        first = max(2, group.cooldown + 1)
        need = max(first, window + 1) + 1
        if epochs < need and own("cooldown", "window"):
            filled = (
                ""
                if not window
                else f"its window of {window} epochs is full from epoch {window + 1}, "
            )
            lines.append(
                f"{name}: train.epochs = {epochs} leaves the rule no decision that sees a full "
                f"window and takes effect: it first decides at epoch {first} (cooldown "
                f"{group.cooldown}), {filled}and the last epoch's decision changes nothing. Use "
                f"at least {need} epochs, or a shorter {name}.cooldown"
                f"{f' or {name}.window' if window else ''}."
            )
        chances = max(0, (epochs - 1 - first) // (group.cooldown + 1) + 1)
        reach = min(group.max_batch, int(cfg.train.batch_size * group.growth**chances))
        for dataset, size in sizes.items():
            if size is None:
                continue
            if group.max_batch > size and own("max_batch"):
                lines.append(
                    f"{name}.max_batch = {group.max_batch} exceeds the {size} training "
                    f"samples of {dataset}: set it to at most {size // FEW_STEPS} (a "
                    f"quarter) so an epoch keeps {FEW_STEPS} steps."
                )
            elif size // reach < FEW_STEPS and own("cooldown", "max_batch", "growth"):
                lines.append(
                    f"{name}: a batch of {reach}, which the rule may reach in "
                    f"{epochs} epochs, leaves {size // reach} step(s) an epoch on "
                    f"{dataset} ({size} samples): set {name}.max_batch to at most "
                    f"{size // FEW_STEPS} for at least {FEW_STEPS}."
                )
    cores = os.cpu_count() or 1
    if cfg.execution.cpus_per_run > cores:
        lines.append(
            f"execution.cpus_per_run = {cfg.execution.cpus_per_run:g} is more threads "
            f"than this machine's {cores} cores: runs will wait on each other."
        )
    return lines


def render(name: str) -> str:
    """The complete params.yaml of preset `name`, validated."""
    source = resolve_preset(name)
    cfg = load_params(source)
    preflight(cfg, str(source))
    return HEADER.format(name=source.stem) + OmegaConf.to_yaml(cfg)


def _committed(path: Path) -> bool:
    """True when git holds `path` exactly as it is on disk."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
        )
    except OSError:
        return False
    return status.returncode == 0 and status.stdout.strip() == ""


def use_preset(name: str, params: str = "params.yaml", force: bool = False) -> str:
    text, target = render(name), Path(params)
    backup = ""
    if target.is_file() and target.read_text() != text:
        if not force and not _committed(target):
            raise ConfigError(
                f"{params} has changes git does not hold, and `deba preset {name}` "
                f"would overwrite them: commit them, or rerun with --force (the "
                f"current file is then kept as {params}.bak)."
            )
        if force:  # a backup never replaces an older one: that may hold the user's own edit
            kept = next(
                Path(f"{params}.bak{'' if n == 0 else f'.{n}'}")
                for n in range(10**6)
                if not Path(f"{params}.bak{'' if n == 0 else f'.{n}'}").exists()
            )
            shutil.copyfile(target, kept)
            backup = f"; the previous file is {kept}"
    write_text(target, text)
    checked = check(params).split(": ", 1)[1]
    return f"{params} now holds preset {Path(name).stem} ({checked}){backup}"
