"""`deba validate --estimate` against a direct timing of each model, side by side in one run.

For every architecture of a preset (default: paper): the estimate's step at train.batch_size
(timed there, or for large inputs at the probe batch and scaled by samples) beside a direct
timing of the same model at that batch (timm model, SGD, random data at the dataset's shape:
two warm-up steps, then the median of three). `python -m benchmarks.estimate_check [preset]
[--direct-up-to PIXELS]`: models whose input side is above PIXELS are timed directly at the
probe batch and scaled by samples only (ViT-B/16 at 224 pixels takes minutes a step at 64 on
two cores)."""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from deba_pipeline.config import load_params
from deba_pipeline.config.presets import resolve_preset
from deba_pipeline.engine.models import create_model
from deba_pipeline.execution.estimate import PROBE_BATCH, dataset_shape, step_seconds


def direct(cfg, arch, dataset, batch) -> float:
    _, classes, side, channels = dataset_shape(cfg, dataset)
    side = cfg.train.image_size.get(arch, side)
    model = create_model(arch, classes, channels, side)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, channels, side, side), torch.randint(0, classes, (batch,))
    times = []
    for i in range(5):
        began = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset", nargs="?", default="paper")
    parser.add_argument("--direct-up-to", type=int, default=64)
    args = parser.parse_args()
    cfg = load_params(resolve_preset(args.preset))
    dataset, batch = cfg.study.datasets[0], cfg.train.batch_size
    step_seconds(cfg, cfg.study.archs[0], dataset)  # the process's one-time start-up, apart
    print(f"| architecture | estimate at {batch} (s) | direct (s) | estimate / direct |")
    print("|---|---|---|---|")
    for arch in cfg.study.archs:
        estimated = step_seconds(cfg, arch, dataset)
        side = cfg.train.image_size.get(arch, dataset_shape(cfg, dataset)[2])
        if side <= args.direct_up_to:
            measured, how = direct(cfg, arch, dataset, batch), ""
        else:
            probe = min(batch, PROBE_BATCH)
            measured = direct(cfg, arch, dataset, probe) * batch / probe
            how = f" (at {probe}, ×{batch // probe})"
        print(
            f"| {arch} | {estimated:.3f} | {measured:.3f}{how} | {estimated / measured:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
