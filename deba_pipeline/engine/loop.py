"""Train one model under a fixed or a DEBA batch schedule and return its run record (SPEC §5).

    from deba_pipeline.engine.loop import train
    record = train(spec)            # spec: a RunSpec; resumes from its checkpoint if one exists

Per step the loop does the step and nothing else; the host syncs once per epoch (loss sums and
profile accumulators stay on the device). Signals are computed once per epoch by the scheduler.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import plugins
from ..errors import ConfigError, DebaError, PluginError
from ..scheduler import DEBAScheduler
from . import distributed as ddp
from .checkpoint import Checkpointer
from .data import hold, load_split
from .flatgrad import FlatGrads
from .models import create_model
from .spec import RunSpec
from .tracking import Tracker, run_group


@dataclass
class EpochResult:
    """One trained (and then evaluated) epoch, before the scheduler's step."""

    batch_size: int                  # samples per step
    steps: int                       # full batches trained (the last partial one is dropped)
    train_loss: float                # mean over the epoch's steps
    grads: list                      # what the scheduler observes (SPEC §1 gradient_source)
    grad_norm_var: float | None = None  # profile runs: Var over steps of ‖∇L‖ (SPEC §2)
    loss_var: float | None = None       # profile runs: Var over steps of L
    epoch: int = 0
    lr: float = 0.0
    epoch_time_s: float = 0.0        # training only
    test_accuracy: float = 0.0       # percent
    eval_time_s: float = 0.0
    peak_memory_mb: float | None = None  # GPU only
    accumulated: dict = field(default_factory=dict)  # the per-step sums signals asked for


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DebaError(f"train.device is {name!r} but no CUDA device is visible: set "
                        f"train.device to auto or cpu.")
    return torch.device(name)


def build_scheduler(spec: RunSpec, world: int = 1) -> DEBAScheduler:
    if spec.method == "fixed":  # observe only: the record carries the same signals
        size = spec.train.batch_size
        return DEBAScheduler(batch_size=size, min_batch=world, max_batch=max(size, 2048),
                             world_size=world)
    return DEBAScheduler(batch_size=spec.train.batch_size, config=spec.deba, world_size=world)


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
        self.device = ddp.local_device(resolve_device(t.device))
        if self.device.type == "cpu":  # denormal weights late in training halve CPU speed
            torch.set_flush_denormal(True)
        self.autocast = torch.bfloat16 if t.precision == "bf16" else None
        torch.manual_seed(spec.seed)
        for path in spec.plugins:  # a model or a dataset may come from a plugin file
            plugins.load_plugin_file(path)
        split = load_split(spec.dataset, spec.seed, spec.data, t.image_size.get(spec.arch))
        side = t.image_size.get(spec.arch, split.shape[-1])
        self.data = hold(split, self.device, spec.seed, spec.data, side)
        self.data.shard(self.rank, self.world)
        self.model = create_model(spec.arch, split.num_classes, split.shape[0], side,
                                  **t.model_kwargs.get(spec.arch, {})).to(self.device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._check_model_takes()
        labels = int(max(split.y_train.max(), split.y_test.max())) + 1
        if labels > getattr(self.model, "num_classes", labels):
            raise DebaError(f"{spec.name}: {spec.dataset} has labels up to {labels - 1} but the "
                            f"model has {self.model.num_classes} outputs: check "
                            f"data.synthetic.num_classes or the dataset files.")
        if t.batch_size > self.data.train_size:
            raise DebaError(f"{spec.name}: train.batch_size = {t.batch_size} is larger than the "
                            f"training set ({self.data.train_size} samples of {spec.dataset}): "
                            f"lower train.batch_size or use more data.")
        if self.world > 1 and t.sync_batchnorm:  # else BatchNorm keeps statistics per rank
            self.model = ddp.sync_batchnorm(self.model, self.device, spec.name)
        self.net = ddp.wrap(self.model, self.device) if self.world > 1 else self.model
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if t.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(self.params, lr=t.lr, weight_decay=t.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(self.params, lr=t.lr, momentum=t.momentum,
                                             weight_decay=t.weight_decay)
        self.lr_product = 1.0  # a plugin policy's (batch, lr_factor) answers, multiplied
        self.scheduler = build_scheduler(spec, self.world)
        if self.scheduler.policy.max_batch > self.data.train_size:  # an epoch needs a full batch
            self.scheduler.cap_max_batch(self.data.train_size)
        self.accumulate = self.scheduler.accumulate  # per-step sums the signals asked for
        self.flat_grads = None  # made on the first epoch whose signals ask for per-step sums
        self.record = spec.new_record()
        self.record["data_path"] = self.data.path  # device-resident or streamed
        self.record["threads"] = torch.get_num_threads()  # CPU results depend on it
        self.record["num_classes"] = split.num_classes    # chance is 100 / num_classes percent
        self.checkpoints = Checkpointer(Path(state_dir), spec)
        self.last_fit = None  # the last batch size that completed an epoch

    @torch.no_grad()
    def _check_model_takes(self):
        """One eval-mode forward of two samples, so a shape mismatch is a message, not a trace."""
        self.model.eval()
        sample = next(self.data.test_batches(2))[0]
        try:
            self.model(sample)
        except (AssertionError, RuntimeError, ValueError) as exc:
            raise DebaError(
                f"{self.spec.name}: {self.spec.arch} cannot take {self.spec.dataset} inputs of "
                f"shape {tuple(sample.shape[1:])} ({str(exc).splitlines()[0]}): set "
                f"train.image_size.{self.spec.arch} (e.g. 32 or 224) or "
                f"train.model_kwargs.{self.spec.arch} (e.g. patch_size).") from None

    # -- the run -----------------------------------------------------------------------------
    def run(self, tracker: Tracker | None = None, progress: bool = True) -> dict:
        start, pending = self.resume()
        epochs = self.spec.train.epochs
        bar = tqdm(total=epochs, initial=start, desc=self.spec.name, leave=False, unit="epoch",
                   disable=not (progress and sys.stderr.isatty()))
        for epoch in range(start + 1, epochs + 1):
            result = pending or self.train_and_evaluate(epoch)
            pending = None
            entry = self.step_scheduler(result)
            self.record["epochs"].append(entry)
            if tracker:
                tracker.log(entry, step=epoch)
            bar.set_postfix(batch=entry["batch_size"], loss=f"{entry['train_loss']:.3f}",
                            sps=f"{entry['samples_per_s']:.0f}", decision=entry["decision"])
            bar.update()
            if epoch % self.spec.train.checkpoint_every == 0 and epoch < epochs \
                    and self.rank == 0:
                self.checkpoints.save(epoch, self.state())
        bar.close()
        done = self.record["epochs"]
        self.record["final_test_accuracy"] = done[-1]["test_accuracy"]
        self.record["train_time_s"] = sum(e["epoch_time_s"] for e in done)
        self.record["eval_time_s"] = sum(e["eval_time_s"] for e in done)
        if progress and not sys.stderr.isatty():  # logs (DVC, CI) get one line per run
            print(summary_line(self.spec.name, self.record)
                  + (f" (resumed after epoch {start})" if start else ""), flush=True)
        if self.rank == 0:
            self.checkpoints.finish(self.record)
        if tracker:
            tracker.summary({k: self.record[k] for k in
                             ("final_test_accuracy", "train_time_s", "eval_time_s")})
        return self.record

    def train_and_evaluate(self, epoch: int) -> EpochResult:
        """Epoch `epoch`'s training and evaluation: everything but the scheduler's step."""
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        began = time.perf_counter()
        result = self.train_epoch_fitting(epoch, self.scheduler.batch_size)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        result.epoch, result.lr, result.epoch_time_s = epoch, lr, time.perf_counter() - began
        if not math.isfinite(result.train_loss):
            raise DebaError(
                f"{self.spec.name}: the training loss became {result.train_loss} in epoch "
                f"{epoch}. {self.checkpoints.describe_last()} Lower train.lr or check the data: "
                f"a changed setting starts a new run, and rerunning unchanged (after fixing the "
                f"data) resumes from that checkpoint.")
        self.last_fit = result.batch_size
        began = time.perf_counter()
        result.test_accuracy = self.evaluate()
        result.eval_time_s = time.perf_counter() - began
        if self.device.type == "cuda":
            result.peak_memory_mb = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return result

    def learning_rate(self) -> float:
        """The next epoch's rate from its batch size and the samples trained so far, never as a
        running product of earlier rates (SPEC §6): η₀ × the policy's lr_scale × the schedule."""
        t = self.spec.train
        rate = t.lr * self.scheduler.lr_scale() * self.lr_product
        if t.lr_schedule == "cosine":  # over samples, so a larger batch does not stretch it
            seen = sum(e["samples"] for e in self.record["epochs"])
            rate *= 0.5 * (1 + math.cos(math.pi * min(1.0, seen / (t.epochs
                                                                    * self.data.train_size))))
        return rate

    def step_scheduler(self, result: EpochResult) -> dict:
        """The scheduler's step for a trained epoch, and the epoch's record entry. A plugin that
        fails here stops the run after checkpointing the trained epoch, so no work is lost."""
        try:
            epoch = {"steps": result.steps, "accumulated": result.accumulated,
                     "dataset_size": self.data.train_size}  # an epoch is one permutation
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
            raise type(exc)(f"{self.spec.name}: {exc} The trained epoch {result.epoch} is saved "
                            f"in {path}. Fix the plugin and rerun: a fixed installed plugin "
                            f"package resumes there; a fix to a file in plugins/ makes a new run "
                            f"(the files are part of its identity) that starts from epoch 1."
                            ) from None
        except ConfigError as exc:  # the loss or gradients are not finite: the training's fault
            raise DebaError(f"{self.spec.name}: epoch {result.epoch} ended with a non-finite "
                            f"loss or gradient ({exc}) {self.checkpoints.describe_last()} "
                            f"Rerunning unchanged repeats this epoch: lower train.lr, or use "
                            f"train.precision fp32.") from None
        if self.world > 1:
            ddp.check_agreement(self.spec.name, result.epoch, decision, self.scheduler.batch_size)
        self.lr_product *= lr_factor
        entry = {"epoch": result.epoch, "batch_size": result.batch_size, "lr": result.lr,
                 "train_loss": result.train_loss, "test_accuracy": result.test_accuracy,
                 "epoch_time_s": result.epoch_time_s, "eval_time_s": result.eval_time_s,
                 "steps": result.steps, "samples": result.steps * result.batch_size,
                 "samples_per_s": result.steps * result.batch_size / result.epoch_time_s,
                 "signals": signals, "decision": decision,
                 "next_batch_size": self.scheduler.batch_size,
                 "peak_memory_mb": result.peak_memory_mb}
        if self.spec.profile:
            entry["grad_norm_var"], entry["loss_var"] = result.grad_norm_var, result.loss_var
        return entry

    # -- one epoch ---------------------------------------------------------------------------
    def train_epoch(self, batch_size: int, batches=None) -> EpochResult:
        """One epoch at `batch_size`; `batches` replaces the held data (benchmarks feed
        pre-sliced tensors or a DataLoader through the same loop)."""
        self.model.train()
        zero = lambda: torch.zeros((), dtype=torch.float64, device=self.device)  # noqa: E731
        loss_sum, loss_sq, norm_sum, norm_sq = zero(), zero(), zero(), zero()
        epoch_mean = self.spec.deba is not None and self.spec.deba.gradient_source == "epoch_mean"
        flat = None  # the signals' per-step sums: one op each on one buffer behind the grads
        if self.accumulate and not epoch_mean and self.world == 1:
            self.flat_grads = flat = self.flat_grads or FlatGrads(self.params)
            flat.attach()
        grad_sum = None
        if epoch_mean or "grad_sum" in self.accumulate:
            grad_sum = [torch.zeros_like(g) for g in ([flat.buffer] if flat else self.params)]
        norms = self.spec.profile or "grad_sq_norm" in self.accumulate
        channels_last, steps = self.spec.train.channels_last, 0
        losses = [] if self.world > 1 else None  # each step's loss, averaged over ranks below
        for x, y in batches if batches is not None else self.data.train_batches(batch_size):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if flat is not None:
                flat.zero()
            else:
                self.optimizer.zero_grad(set_to_none=True)
            loss = forward_backward(self.net, x, y, self.autocast).detach().double()
            if losses is not None:  # one rank's share: the global loss is known at the end
                losses.append(loss)
            else:
                loss_sum += loss
                if self.spec.profile:
                    loss_sq += loss * loss
            if norms:  # DDP's gradients are already the global batch's
                if flat is not None:
                    squared = flat.squared_norm()
                    norm_sum += squared.sqrt()
                    norm_sq += squared
                else:
                    grads = [p.grad for p in self.params if p.grad is not None]
                    norm = torch.nn.utils.get_total_norm(grads).double()
                    norm_sum += norm
                    norm_sq += norm * norm
            if grad_sum is not None:
                torch._foreach_add_(grad_sum, [flat.buffer] if flat else
                                    [p.grad for p in self.params])
            self.optimizer.step()
            steps += 1
        if losses:  # SPEC §7: the mean over every sample of every rank, step by step
            per_step = ddp.mean_over_ranks(torch.stack(losses))
            loss_sum, loss_sq = per_step.sum(), per_step.square().sum()
        totals = torch.stack([loss_sum, loss_sq, norm_sum, norm_sq]).tolist()  # the epoch's sync
        mean_loss = totals[0] / steps
        grads = [g / steps for g in grad_sum] if epoch_mean else [p.grad for p in self.params]
        result = EpochResult(batch_size, steps, mean_loss, grads)
        if "grad_sq_norm" in self.accumulate:
            result.accumulated["grad_sq_norm"] = totals[3]
        if "grad_sum" in self.accumulate:
            result.accumulated["grad_sum"] = grad_sum
        if self.spec.profile:  # population variances over the epoch's steps (SPEC §2)
            result.loss_var = max(0.0, totals[1] / steps - mean_loss ** 2)
            result.grad_norm_var = max(0.0, totals[3] / steps - (totals[2] / steps) ** 2)
        return result

    def train_epoch_fitting(self, epoch: int, batch_size: int) -> EpochResult:
        """Train one epoch; on out-of-memory fall back to the last size that fit and cap there."""
        while True:
            try:
                return self.train_epoch(batch_size)
            except torch.OutOfMemoryError:
                self.optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                fallback = self.last_fit
                if self.world > 1:  # the other ranks are in the step's all-reduce: no fallback
                    raise DebaError(f"{self.spec.name}: out of device memory at global batch "
                                    f"{batch_size} ({batch_size // self.world} a process) in "
                                    f"epoch {epoch}: lower deba.max_batch.") from None
                if fallback is None or fallback >= batch_size:
                    raise DebaError(f"{self.spec.name}: out of device memory at batch size "
                                    f"{batch_size} in epoch {epoch}, with no smaller size known "
                                    f"to fit: lower train.batch_size.") from None
                self.scheduler.cap_max_batch(fallback)
                self.record["events"].append({"epoch": epoch, "event": "out_of_memory",
                                              "batch_size": batch_size, "fallback": fallback})
                tqdm.write(f"{self.spec.name}: out of memory at batch {batch_size}; "
                           f"continuing at {fallback} and capping max_batch there")
                batch_size = fallback

    @torch.no_grad()
    def evaluate(self) -> float:
        self.model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for x, y in self.data.test_batches(self.spec.train.eval_batch_size):
            if self.spec.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=self.autocast,
                                enabled=self.autocast is not None):
                correct += (self.model(x).argmax(dim=1) == y).sum()
        return 100.0 * correct.item() / len(self.data.y_test)

    # -- what a checkpoint holds -------------------------------------------------------------
    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "data": self.data.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rng, "record": self.record,
                "last_fit": self.last_fit, "lr_product": self.lr_product}

    def resume(self) -> tuple:
        """(epochs done, the trained epoch awaiting its scheduler step or None), from the
        checkpoint if there is one."""
        saved = self.checkpoints.load(self.device)
        if saved is None:
            return 0, None
        try:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
        except (RuntimeError, ValueError, KeyError, DebaError) as exc:
            raise DebaError(f"checkpoint {self.checkpoints.path} does not match "
                            f"{self.spec.name} ({str(exc).splitlines()[0]}): delete it to start "
                            f"afresh.") from None
        torch.set_rng_state(saved["rng"]["torch"].cpu())
        self.data.generator.set_state(saved["rng"]["data"].cpu())
        if "cuda" in saved["rng"]:
            torch.cuda.set_rng_state(saved["rng"]["cuda"].cpu(), self.device)
        self.record, self.last_fit = saved["record"], saved["last_fit"]
        self.lr_product = saved.get("lr_product", 1.0)
        pending = saved.get("pending")
        return saved["epoch"], EpochResult(**pending) if pending else None


def summary_line(name: str, record: dict) -> str:
    """One finished run in one line, the same wherever it trained."""
    sizes = sorted({e["batch_size"] for e in record["epochs"]})
    return (f"{name}: {len(record['epochs'])} epochs, accuracy "
            f"{record['final_test_accuracy']:.2f}%, train {record['train_time_s']:.1f}s, batch "
            f"sizes {sizes}")


def train(spec: RunSpec, state_dir=".deba", tracking: dict | None = None,
          experiment: str = "default", progress: bool = True) -> dict:
    """The record of `spec`: reused if this exact run already finished, resumed if it was cut."""
    checkpointer = Checkpointer(Path(state_dir), spec)
    done = checkpointer.finished()
    if done is not None:
        if progress:
            print(f"{spec.name}: reused the finished run {checkpointer.done_path} (same "
                  f"configuration and training code)", flush=True)
        record = copy.deepcopy(done)
        record.update(variant=spec.variant, config=spec.config())
        return record
    with checkpointer.lock():
        if spec.train.processes > 1 and ddp.rank_and_world()[1] == 1:
            return ddp.launch(spec, state_dir, tracking or {"wandb": "disabled"}, experiment,
                              progress)
        trainer = Trainer(spec, state_dir)
        tracker = tracker_for(spec, state_dir, tracking, experiment)
        try:
            return trainer.run(tracker, progress)
        finally:
            tracker.finish()


def tracker_for(spec: RunSpec, state_dir, tracking: dict | None, experiment: str) -> Tracker:
    """The run's W&B run: its id is the run key, so a resumed run continues it, in the group of
    the invocation that started it."""
    tracking = tracking or {"wandb": "disabled"}
    if tracking["wandb"] != "disabled":
        checkpointer = Checkpointer(Path(state_dir), spec)
        experiment = run_group(Path(state_dir) / "wandb" / "groups" / f"{checkpointer.key}",
                               experiment, resumed=checkpointer.path.is_file())
    return Tracker(tracking["wandb"], tracking.get("project", "deba-pipeline"), experiment,
                   spec.name, spec.config(), str(Path(state_dir) / "wandb"),
                   tracking.get("entity"), run_id=spec.key())
