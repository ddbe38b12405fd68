"""One W&B group per invocation (docs/pipeline.md "Comparing experiments"): what the user typed,
`dvc repro` or a `deba` command, names the group its runs log to."""

from __future__ import annotations

import os
import time
from pathlib import Path


def wandb_group(cfg) -> str:
    """One W&B group per invocation: the DVC experiment (else the study) and when the invocation
    began, e.g. `quick 2026-12-01 13:52:07`, so two reproductions of one study never mix."""
    return f"{os.environ.get('DVC_EXP_NAME') or cfg.study.name} {invocation_started()}"


def invocation_started() -> str:
    """When the command the user typed began: the `dvc repro` or `dvc exp run` whose stages this
    process serves (each stage is a process of its own), else this `deba` command. Kept in
    DEBA_INVOCATION for the processes it starts (torchrun's ranks); set it to group by hand."""
    if not os.environ.get("DEBA_INVOCATION"):
        began = _invocation_process().create_time()
        os.environ["DEBA_INVOCATION"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(began))
    return os.environ["DEBA_INVOCATION"]


def _invocation_process():
    import psutil

    here = psutil.Process()
    for parent in here.parents():
        try:
            command = parent.cmdline()[:3]
        except psutil.Error:  # a parent of another user, or gone
            continue
        if any(Path(arg).name == "dvc" for arg in command) or "dvc.__main__" in command:
            return parent
    return here
