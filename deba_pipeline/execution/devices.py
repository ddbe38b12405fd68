"""What a study would cost on a GPU the user names (`deba validate --estimate --device h100`):
FLOPs a training step over the device's documented peak times a stated utilization.

Peaks are the vendors' datasheet figures for dense math (without structured sparsity), in
TFLOP/s. `fp32` is read at the plain FP32 peak, as PyTorch runs a float32 matmul by default
(`torch.backends.cuda.matmul.allow_tf32` is off); cuDNN may run convolutions on TF32 tensor
cores, so a convnet can beat the fp32 figure. `bf16` is read at the BF16 tensor-core peak.
"""

from __future__ import annotations

from pathlib import Path

from deba_pipeline.core.errors import ConfigError

# device: (its name, {precision: dense peak in TFLOP/s}), from NVIDIA's datasheets
DEVICES = {
    "h200": ("NVIDIA H200 SXM", {"fp32": 67.0, "bf16": 989.5}),
    "h100": ("NVIDIA H100 SXM", {"fp32": 67.0, "bf16": 989.5}),
    "h100-pcie": ("NVIDIA H100 PCIe", {"fp32": 51.2, "bf16": 756.5}),
    "a100": ("NVIDIA A100 SXM", {"fp32": 19.5, "bf16": 312.0}),
    "a10": ("NVIDIA A10", {"fp32": 31.2, "bf16": 125.0}),
    "l4": ("NVIDIA L4", {"fp32": 30.3, "bf16": 121.0}),
    "rtx4090": ("NVIDIA GeForce RTX 4090", {"fp32": 82.6, "bf16": 165.2}),
}
# A training step's sustained share of the peak: large models on large batches reach 0.4-0.6
# of a tensor-core peak; small inputs (CIFAR's 32 pixels) reach less, as kernel launches then
# take a share of every step. Stated with every estimate; `--utilization` sets another.
UTILIZATION = 0.4


def step_flops(cfg, arch: str, dataset: str) -> float:
    """FLOPs of one training step at train.batch_size (forward and backward; a multiply-add is
    two), counted on the meta device: nothing is computed, no memory is used."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from deba_pipeline.engine.models import create_model
    from deba_pipeline.execution.estimate import dataset_shape

    _, classes, side, channels = dataset_shape(cfg, dataset)
    side = cfg.train.image_size.get(arch, side)
    kwargs = dict(cfg.train.model_kwargs.get(arch) or {})
    model = create_model(arch, classes, channels, side, **kwargs).to("meta")
    x = torch.empty(2, channels, side, side, device="meta")  # two: BatchNorm needs a batch
    with FlopCounterMode(display=False) as counted:
        model(x).sum().backward()
    return counted.get_total_flops() / 2 * cfg.train.batch_size


def committed_rates(root: Path = Path("results/steptime")) -> dict:
    """{arch: GFLOP/s this machine reached}, from the committed step-time tables at the fixed
    batch (read against the same FLOP count): how far time follows FLOPs here."""
    import json

    from deba_pipeline.config import load_params
    from deba_pipeline.config.schema import schema

    rates = {}
    if not root.is_dir():
        return rates
    cfg = load_params() if Path("params.yaml").is_file() else schema()
    for path in sorted(root.glob("*.json")):
        for dataset, table in json.loads(path.read_text()).items():
            step = (table.get("step_s") or {}).get(str(cfg.train.batch_size))
            if step:
                rates[f"{path.stem}/{dataset}"] = step_flops(cfg, path.stem, dataset) / step / 1e9
    return rates


def flops_estimate(cfg, device: str, utilization: float | None, progress=None) -> str:
    """The estimate's text for `device`, its assumptions printed beside the numbers."""
    from deba_pipeline.execution.estimate import as_hours, dataset_shape, runs_per_cell

    if device not in DEVICES:
        raise ConfigError(
            f"--device {device!r} is not a device with a documented peak here: "
            f"use one of {', '.join(DEVICES)}."
        )
    utilization = UTILIZATION if utilization is None else utilization
    if not 0 < utilization <= 1:
        raise ConfigError(f"--utilization {utilization} is not allowed: it must be in (0, 1].")
    name, peaks = DEVICES[device]
    precision = str(
        cfg.train.precision.name if hasattr(cfg.train.precision, "name") else cfg.train.precision
    )
    rate = peaks[precision] * 1e12 * utilization
    lines, total, counted = [], 0.0, {}
    for arch in cfg.study.archs:
        for dataset in cfg.study.datasets:
            key = (arch, dataset_shape(cfg, dataset)[2:])
            if key not in counted:
                if progress:
                    progress(f"counting {arch}'s FLOPs on {dataset}-shaped inputs")
                counted[key] = step_flops(cfg, arch, dataset)
            step = counted[key] / rate
            steps = (
                runs_per_cell(cfg, dataset)
                * cfg.train.epochs
                * (dataset_shape(cfg, dataset)[0] // cfg.train.batch_size)
            )
            total += steps * step
            lines.append(
                f"  {arch}/{dataset}: {counted[key] / 1e9:.1f} GFLOP a step at batch "
                f"{cfg.train.batch_size}, {step * 1000:.2f} ms, "
                f"{runs_per_cell(cfg, dataset)} runs: {as_hours(steps * step)} "
                f"device-hours"
            )
    rates = committed_rates()
    if rates:
        low, high = min(rates.values()), max(rates.values())
        lines.append(
            f"  check: this machine's step-time tables ({', '.join(sorted(rates))}) "
            f"ran {low:.1f}-{high:.1f} GFLOP/s: time follows FLOPs within "
            f"{high / low:.1f}x across those models here"
        )
    return "\n".join(
        [
            f"estimate on one {name} (fixed-batch steps; evaluation not counted):",
            *lines,
            f"  total: {as_hours(total)} device-hours",
            f"  assumes: {peaks[precision]:g} TFLOP/s ({precision} peak, dense, the datasheet's) "
            f"× {utilization:g} utilization (--utilization); a step's time follows its FLOPs. "
            f"Small inputs on a large GPU are bound by kernel launches instead, so for them "
            f"this is a lower bound.",
        ]
    )
