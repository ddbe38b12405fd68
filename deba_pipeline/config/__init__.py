"""The study's configuration: the schema (the one source of defaults), loading params.yaml over
it, its validation, and the presets in pipelines/."""

from deba_pipeline.config.load import load_params, merge
from deba_pipeline.config.schema import (
    OPTIMIZER_DEFAULTS,
    PAPER_THRESHOLDS,
    SAFE_NAME,
    DataConfig,
    Params,
    TaxonomyConfig,
    TrainConfig,
    schema,
)
from deba_pipeline.config.validation import deba_groups
from deba_pipeline.core.options import DebaConfig, check_deba, deba_config

__all__ = [
    "load_params",
    "merge",
    "schema",
    "deba_groups",
    "Params",
    "DataConfig",
    "TrainConfig",
    "TaxonomyConfig",
    "DebaConfig",
    "OPTIMIZER_DEFAULTS",
    "PAPER_THRESHOLDS",
    "SAFE_NAME",
    "check_deba",
    "deba_config",
]
