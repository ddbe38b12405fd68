"""Train one model under a fixed or a DEBA batch schedule and return its run record
(docs/records.md).

    record = Trainer(spec, state_dir).run()   # resumes from the run's checkpoint if it has one

Per step the loop does the step and nothing else; the host syncs once per epoch (loss sums and
profile accumulators stay on the device). Signals are computed once per epoch by the scheduler.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from deba_pipeline.core import plugins
from deba_pipeline.core.errors import ConfigError, DebaError, PluginError
from deba_pipeline.core.record import pack_hits
from deba_pipeline.engine import ddp
from deba_pipeline.engine.checkpoint import Checkpointer, restore, trainer_state
from deba_pipeline.engine.data import hold, load_split
from deba_pipeline.engine.flatgrad import FlatGrads
from deba_pipeline.engine.memory import fall_back
from deba_pipeline.engine.models import check_fits, check_takes, create_model, create_optimizer
from deba_pipeline.engine.spec import RunSpec
from deba_pipeline.engine.sums import NOISE_SUMS, EpochResult, StepSums, gradient_parts
from deba_pipeline.engine.tracking import Progress, Tracker, summary_line

log = logging.getLogger(__name__)


def forward_backward(model, x, y, autocast_dtype):
    """One step's forward and backward; the OOM test patches this to fail above a batch size."""
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss


class Trainer:
    def __init__(self, spec: RunSpec, state_dir=".deba"):
        self.spec, t = spec, spec.train
        self.rank, self.world = ddp.rank_and_world()  # (0, 1) unless launched by torchrun
        self.device = ddp.local_device(ddp.resolve_device(t.device))
        self.autocast = torch.bfloat16 if t.precision == "bf16" else None
        torch.manual_seed(spec.seed)
        for path in spec.plugins:  # a model or a dataset may come from a plugin file
            plugins.load_plugin_file(path)
        split = load_split(spec.dataset, spec.seed, spec.data, t.image_size.get(spec.arch))
        side = t.image_size.get(spec.arch, split.shape[-1])
        self.data = hold(split, self.device, spec.seed, spec.data, side)
        self.data.shard(self.rank, self.world)
        self.model = create_model(
            spec.arch, split.num_classes, split.shape[0], side, **t.model_kwargs.get(spec.arch, {})
        ).to(self.device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        check_takes(self.model, next(self.data.test_batches(2))[0], spec)
        check_fits(
            self.model,
            spec,
            int(max(split.y_train.max(), split.y_test.max())) + 1,
            self.data.train_size,
        )
        if self.world > 1 and t.sync_batchnorm:  # else BatchNorm keeps statistics per rank
            self.model = ddp.sync_batchnorm(self.model, self.device, spec.name)
        self.net = ddp.wrap(self.model, self.device) if self.world > 1 else self.model
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = create_optimizer(self.params, t)
        self.lr_product = 1.0  # a plugin policy's (batch, lr_factor) answers, multiplied
        self.scheduler = spec.new_scheduler(self.world)
        if self.scheduler.policy.max_batch > self.data.train_size:  # an epoch needs a full batch
            self.scheduler.cap_max_batch(self.data.train_size)
        self.accumulate = self.scheduler.accumulate  # per-step sums the signals asked for
        self.flat_grads = None  # made on the first epoch whose signals ask for per-step sums
        self.record = spec.new_record()
        self.record["data_path"] = self.data.path  # device-resident or streamed
        self.record["threads"] = torch.get_num_threads()  # CPU results depend on it
        self.record["num_classes"] = split.num_classes  # chance is 100 / num_classes percent
        self.record["train_size"] = self.data.train_size  # an epoch's steps: train_size // B
        self.checkpoints = Checkpointer(Path(state_dir), spec)
        self.last_fit = None  # the last batch size that completed an epoch
        self.hits = None  # the last evaluation's right/wrong per test sample, on the device

    # -- the run -----------------------------------------------------------------------------
    def run(
        self, tracker: Tracker | None = None, progress: bool | str = True, after_epoch=None
    ) -> dict:
        """Train to the last epoch (resuming where a checkpoint left off); `after_epoch(self)`,
        where given, runs after each epoch's record entry (the execution layer's step probe)."""
        start, pending = self.resume()
        epochs = self.spec.train.epochs
        # a bar on a terminal, else one line a run; "line": a line wherever (runs side by side)
        bar_shown = progress is True and sys.stderr.isatty()
        lines = bool(progress) and not bar_shown
        where = Progress(self.spec.name, epochs, start, lines=lines, bar=bar_shown)
        for epoch in range(start + 1, epochs + 1):
            result = pending or self.epoch(epoch)
            pending = None
            entry = self.step_scheduler(result)
            self.record["epochs"].append(entry)
            if after_epoch is not None:
                after_epoch(self)
            at = where.update(entry)
            if tracker:
                tracker.log({**entry, "progress": at}, step=epoch)
            if epoch % self.spec.train.checkpoint_every == 0 and epoch < epochs and self.rank == 0:
                self.checkpoints.save(epoch, self.state())
        where.close()
        done = self.record["epochs"]
        self.record["final_test_accuracy"] = done[-1]["test_accuracy"]
        if self.hits is None:  # the last epoch came from a checkpoint: evaluate its model again
            self.evaluate()
        self.record["test_hits"] = pack_hits(self.hits.cpu().numpy())
        self.record["train_time_s"] = sum(e["epoch_time_s"] for e in done)
        self.record["eval_time_s"] = sum(e["eval_time_s"] for e in done)
        if self.rank == 0:  # kept before it is announced: a run said finished is never retrained
            self.checkpoints.finish(self.record)
        if progress and not bar_shown:  # logs (DVC, CI) get one line per run
            log.info(
                "%s%s",
                summary_line(self.spec.name, self.record),
                f" (resumed after epoch {start})" if start else "",
            )
        if tracker:
            tracker.summary(
                {k: self.record[k] for k in ("final_test_accuracy", "train_time_s", "eval_time_s")}
            )
        return self.record

    def epoch(self, number: int) -> EpochResult:
        """Epoch `number` from top to bottom: its learning rate, its steps at the scheduler's
        batch size (again at the last size that fit, should the device run out of memory), the
        loss check, the evaluation. The scheduler's step follows apart (`step_scheduler`), so a
        plugin that fails there leaves this trained epoch in a checkpoint."""
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        size, began = self.scheduler.batch_size, time.perf_counter()
        while True:
            try:
                result = self.train_epoch(size)
                break
            except torch.OutOfMemoryError:
                size = fall_back(self, number, size)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        result.epoch, result.lr, result.epoch_time_s = number, lr, time.perf_counter() - began
        if not math.isfinite(result.train_loss):
            raise DebaError(
                f"{self.spec.name}: the training loss became {result.train_loss} in epoch "
                f"{number}. {self.checkpoints.describe_last()} Lower train.lr or check the data: "
                f"a changed setting starts a new run, and rerunning unchanged (after fixing the "
                f"data) resumes from that checkpoint."
            )
        self.last_fit = result.batch_size
        began = time.perf_counter()
        result.test_accuracy = self.evaluate()
        result.eval_time_s = time.perf_counter() - began
        if self.device.type == "cuda":
            result.peak_memory_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        return result

    def learning_rate(self) -> float:
        """The next epoch's rate from its batch size and the samples trained so far, never as a
        running product of earlier rates (docs/peers.md): η₀ × the policy's lr_scale × the
        schedule."""
        t = self.spec.train
        rate = t.lr * self.scheduler.lr_scale() * self.lr_product
        if t.lr_schedule == "cosine":  # over samples, so a larger batch does not stretch it
            seen = sum(e["samples"] for e in self.record["epochs"])
            rate *= 0.5 * (
                1 + math.cos(math.pi * min(1.0, seen / (t.epochs * self.data.train_size)))
            )
        return rate

    def step_scheduler(self, result: EpochResult) -> dict:
        """The scheduler's step for a trained epoch, and the epoch's record entry. A plugin that
        fails here stops the run after checkpointing the trained epoch, so no work is lost."""
        try:
            epoch = {
                "steps": result.steps,
                "accumulated": result.accumulated,
                "dataset_size": self.data.train_size,
            }  # an epoch is one permutation
            if self.spec.method == "fixed":
                signals = self.scheduler.observe(result.train_loss, result.grads, **epoch)
                decision, lr_factor = "hold", 1.0
            else:
                step = self.scheduler.step(result.train_loss, result.grads, **epoch)
                signals, decision, lr_factor = step.signals, step.decision, step.lr_factor
        except PluginError as exc:
            if self.rank != 0:
                raise
            path = self.checkpoints.save(result.epoch - 1, self.state(), pending=result)
            raise type(exc)(
                f"{self.spec.name}: {exc} The trained epoch {result.epoch} is saved "
                f"in {path}. Fix the plugin and rerun: a fixed installed plugin "
                f"package resumes there; a fix to a file in plugins/ makes a new run "
                f"(the files are part of its identity) that starts from epoch 1."
            ) from None
        except ConfigError as exc:  # the loss or gradients are not finite: the training's fault
            raise DebaError(
                f"{self.spec.name}: epoch {result.epoch} ended with a non-finite "
                f"loss or gradient ({exc}) {self.checkpoints.describe_last()} "
                f"Rerunning unchanged repeats this epoch: lower train.lr, or use "
                f"train.precision fp32."
            ) from None
        if self.world > 1:
            ddp.check_agreement(self.spec.name, result.epoch, decision, self.scheduler.batch_size)
        self.lr_product *= lr_factor
        entry = result.entry(signals, decision, self.scheduler.batch_size)
        if self.spec.profile:
            entry["grad_norm_var"], entry["loss_var"] = result.grad_norm_var, result.loss_var
            entry["gradient"] = gradient_parts(
                result.noise_sums, result.batch_size, self.data.train_size
            )
        return entry

    # -- one epoch ---------------------------------------------------------------------------
    def train_epoch(self, batch_size: int, batches=None) -> EpochResult:
        """One epoch at `batch_size`; `batches` replaces the held data (the step-time table and
        the benchmarks feed their own batches through this same loop)."""
        self.model.train()
        sums = self.step_sums(batch_size)
        steps = 0
        for x, y in batches if batches is not None else self.data.train_batches(batch_size):
            if self.spec.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            sums.zero_grad(self.optimizer)
            loss = forward_backward(self.net, x, y, self.autocast)
            sums.add(loss)  # on the device: no sync
            self.optimizer.step()
            steps += 1
        return sums.result(batch_size, steps)  # the epoch's one host sync

    def step_sums(self, batch_size: int) -> StepSums:
        """The epoch's per-step sums: what the profile and the scheduler's signals ask for. A
        profile run also sums what the noise scale's two parts need (docs/method.md
        "prediction"), for the epoch and for each of its halves."""
        epoch_mean = self.spec.deba is not None and self.spec.deba.gradient_source == "epoch_mean"
        accumulate, half = self.accumulate, None
        if self.spec.profile:
            accumulate = tuple(dict.fromkeys((*accumulate, *NOISE_SUMS)))
            half = self.data.train_size // batch_size // 2 or None
        flat = None
        if accumulate and not epoch_mean and self.world == 1:
            self.flat_grads = flat = self.flat_grads or FlatGrads(self.params)
        return StepSums(
            self.params,
            self.device,
            accumulate,
            self.spec.profile,
            epoch_mean,
            self.world,
            flat,
            half,
        )

    @torch.no_grad()
    def evaluate(self) -> float:
        """Test accuracy (%); which samples it got right stays on the device (`hits`)."""
        self.model.eval()
        hits = []
        for x, y in self.data.test_batches(self.spec.train.eval_batch_size):
            if self.spec.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                x.device.type, dtype=self.autocast, enabled=self.autocast is not None
            ):
                hits.append(self.model(x).argmax(dim=1) == y)
        self.hits = torch.cat(hits)
        return 100.0 * self.hits.sum().item() / len(self.data.y_test)

    # -- what a checkpoint holds -------------------------------------------------------------
    def state(self) -> dict:
        return trainer_state(self)

    def resume(self) -> tuple:
        """(epochs done, the trained epoch awaiting its scheduler step or None)."""
        saved = self.checkpoints.load(self.device)
        if saved is None:
            return 0, None
        epoch, pending = restore(self, saved)
        return epoch, EpochResult(**pending) if pending else None
