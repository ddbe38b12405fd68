"""Ablate stage: the DEBA variants of docs/pipeline.md (params `ablate.variants`) for every
architecture on the ablation dataset, in one pool; the fixed baseline comes from the train stage.
`deba ablate --out runs/ablate --thresholds results/thresholds.json`"""

from deba_pipeline.engine.files import make_folder
from deba_pipeline.execution.study import ablate_specs, load_thresholds, run_all


def run(cfg, archs, out: str, thresholds: str) -> None:
    make_folder(out)  # DVC's output even where ablate.variants is {} (nothing to ablate)
    run_all(cfg, ablate_specs(cfg, archs, load_thresholds(cfg, thresholds)), out)
