"""Profile stage: fixed-batch runs of every architecture per dataset and profile seed
(docs/method.md), all in one pool so every device stays busy, then each architecture's stability
metrics per dataset (S per seed, μ_S, σ_S, convergence stability, class, prediction).
`deba profile --out runs/profile --stability results/stability` (`--arch A` for one)"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from deba_pipeline.engine.files import write_json
from deba_pipeline.execution.study import profile_specs, run_all
from deba_pipeline.report.analysis import profile_summary


def run(cfg, archs, out: str, stability: str) -> dict:
    summaries = profile_summary(
        run_all(cfg, profile_specs(cfg, archs), out), OmegaConf.to_container(cfg.taxonomy)
    )
    for arch in archs:
        write_json(Path(stability) / f"{arch}.json", summaries.get(arch, {}))
    return summaries
