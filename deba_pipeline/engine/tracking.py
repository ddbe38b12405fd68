"""Weights & Biases: one run per training run, offline unless the user opts in, never fatal.

The mode is decided before `wandb.init`: `online` without an API key warns once and logs offline,
and a server that does not answer within INIT_TIMEOUT_S falls over to offline. The W&B run id is
the run's key, with resume allowed, so a run resumed from its checkpoint continues the same W&B
run (offline too: `wandb sync` merges the pieces by id).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from deba_pipeline.engine.checkpoint import Checkpointer
from deba_pipeline.engine.files import write_text
from deba_pipeline.engine.spec import RunSpec

log = logging.getLogger(__name__)
_warned = False
INIT_TIMEOUT_S = 15  # seconds to wait for the W&B server before logging offline
# After a server did not answer, the runs that start within this many seconds log offline at
# once instead of each waiting INIT_TIMEOUT_S (a study of 78 runs waited 20 minutes).
UNREACHABLE_FOR_S = 600


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def run_group(kept: Path, group: str, resumed: bool) -> str:
    """The W&B group of a run: the one it started in when it resumes (kept in the file `kept`),
    else `group`, which is kept for a later resume."""
    if resumed and kept.is_file():
        return kept.read_text().strip() or group
    write_text(kept, group)
    return group


def _warn(message: str) -> None:
    """The reason once a process, as one plain warning line (not Python's UserWarning)."""
    global _warned
    if not _warned:
        log.warning("%s", message)
        _warned = True


def _unreachable_lately(marker: Path) -> bool:
    try:
        return time.time() - marker.stat().st_mtime < UNREACHABLE_FOR_S
    except OSError:
        return False


def _usable_mode(mode: str, name: str, marker: Path) -> str:
    """`mode`, or offline where online cannot work: no API key, or W&B unreachable lately."""
    if mode == "online" and not _has_api_key():
        _warn(
            "tracking.wandb is 'online' but no W&B API key is set (WANDB_API_KEY or "
            "`wandb login`): logging offline instead; `wandb sync` uploads it later."
        )
        mode = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    marker.parent.mkdir(parents=True, exist_ok=True)
    if mode == "online" and _unreachable_lately(marker):
        log.warning(
            "%s: W&B did not answer for an earlier run (%s): logging offline "
            "(`wandb sync` uploads it later).",
            name,
            marker.read_text().strip(),
        )
        mode = "offline"
    return mode


class Tracker:
    """Thin wrapper: log(dict, step), summary(dict), finish(). Does nothing when disabled."""

    def __init__(
        self,
        mode: str,
        project: str,
        group: str,
        name: str,
        config: dict,
        directory: str,
        entity=None,
        run_id: str | None = None,
    ):
        self.run, self.mode = None, mode
        if mode == "disabled":
            return
        marker = Path(directory) / "wandb-unreachable"
        mode = _usable_mode(mode, name, marker)
        import wandb

        # console="off": W&B's console capture, once a second run starts in the same process,
        # halved training speed on 2 CPU cores (measured); our logs are in the run record.
        settings = wandb.Settings(console="off", init_timeout=INIT_TIMEOUT_S)
        same = dict(
            project=project,
            group=group,
            name=name,
            config=config,
            dir=directory,
            id=run_id,
            resume="allow" if run_id else None,
            settings=settings,
            job_type=config.get("variant"),
            reinit="finish_previous",
        )
        self.mode = self._start(wandb, mode, entity, same, marker)

    def _start(self, wandb, mode: str, entity, same: dict, marker: Path) -> str:
        """`wandb.init` in `mode`, else offline: the mode it runs in."""
        try:
            self.run = wandb.init(entity=entity, mode=mode, **same)
            return mode
        except Exception as exc:  # a tracking failure must never fail the training run
            reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
            _warn(
                f"W&B could not start ({reason}); logging offline instead (`wandb sync` "
                f"uploads it later)."
            )
            log.warning("%s: logging to W&B offline.", same["name"])
            if mode == "online":
                write_text(marker, reason)
        try:
            wandb.teardown()  # the failed init keeps the run id in use until its service ends
            self.run = wandb.init(mode="offline", **same)
        except Exception:
            self.run = None
        return "offline"

    def log(self, metrics: dict, step: int) -> None:
        """One point per epoch; a nested group such as `signals` becomes `signals/<name>`."""
        if self.run is None:
            return
        flat = {}
        for key, value in metrics.items():
            items = value.items() if isinstance(value, dict) else [(None, value)]
            flat.update({key if sub is None else f"{key}/{sub}": v for sub, v in items})
        self.run.log({k: v for k, v in flat.items() if v is not None}, step=step)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def tracker_for(spec: RunSpec, state_dir, tracking: dict | None, experiment: str) -> Tracker:
    """The run's W&B run: its id is the run key, so a resumed run continues it, in the group of
    the invocation that started it."""
    tracking = tracking or {"wandb": "disabled"}
    if tracking["wandb"] != "disabled":
        checkpointer = Checkpointer(Path(state_dir), spec)
        experiment = run_group(
            Path(state_dir) / "wandb" / "groups" / f"{checkpointer.key}",
            experiment,
            resumed=checkpointer.path.is_file(),
        )
    return Tracker(
        tracking["wandb"],
        tracking.get("project", "deba-pipeline"),
        experiment,
        spec.name,
        spec.config(),
        str(Path(state_dir) / "wandb"),
        tracking.get("entity"),
        run_id=spec.key(),
    )


def summary_line(name: str, record: dict) -> str:
    """One finished run in one line, the same wherever it trained."""
    sizes = sorted({e["batch_size"] for e in record["epochs"]})
    return (
        f"{name}: {len(record['epochs'])} epochs, accuracy "
        f"{record['final_test_accuracy']:.2f}%, train {record['train_time_s']:.1f}s, batch "
        f"sizes {sizes}"
    )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


class Progress:
    """Where a run stands after each epoch: W&B gets its elapsed and remaining seconds every
    epoch; a terminal gets a progress bar (`bar`), a log without one a line at most every
    `every_s` seconds, so a long GPU run shows it is alive and a quick one stays one line a run
    (`deba -q` hides both)."""

    def __init__(
        self, name: str, epochs: int, start: int, lines: bool, every_s: float = 30.0, bar=False
    ):
        self.name, self.epochs, self.start = name, epochs, start
        self.lines, self.every_s = lines, every_s
        self.began = self.shown = time.perf_counter()
        self.bar = (
            tqdm(total=epochs, initial=start, desc=name, leave=False, unit="epoch") if bar else None
        )

    def update(self, entry: dict) -> dict:
        """{elapsed_s, remaining_s} after `entry`'s epoch (remaining at this run's pace)."""
        now, epoch = time.perf_counter(), entry["epoch"]
        elapsed = now - self.began
        remaining = elapsed / (epoch - self.start) * (self.epochs - epoch)
        if self.lines and epoch < self.epochs and now - self.shown >= self.every_s:
            self.shown = now
            log.info(
                "%s: epoch %d/%d, accuracy %.2f%%, batch %d, %s elapsed, about %s to go",
                self.name,
                epoch,
                self.epochs,
                entry["test_accuracy"],
                entry["batch_size"],
                _duration(elapsed),
                _duration(remaining),
            )
        if self.bar is not None:
            self.bar.set_postfix(
                acc=f"{entry['test_accuracy']:.1f}",
                batch=entry["batch_size"],
                loss=f"{entry['train_loss']:.3f}",
                sps=f"{entry['samples_per_s']:.0f}",
                decision=entry["decision"],
            )
            self.bar.update()
        return {"elapsed_s": elapsed, "remaining_s": remaining}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
