"""What an epoch sums step by step, on the device, and the epoch it adds up to.

One `StepSums` per epoch, built from what the run asks for: the loss (always), the profile's
per-step variances of the loss and of ‖∇L‖ (docs/method.md), and the sums the scheduler's signals
ask to accumulate (Σ‖gₜ‖², Σgₜ: docs/peers.md) or the epoch's mean gradient (docs/method.md
gradient_source). Every sum stays a float64 device tensor until `result`, the epoch's one host sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deba_pipeline.core.signals.gradient_noise_scale import noise_parts
from deba_pipeline.engine import ddp

NOISE_SUMS = ("grad_sq_norm", "grad_sum")  # what a profile run sums for the noise scale's parts


def gradient_parts(sums: dict | None, batch_size: int, train_size: int) -> dict | None:
    """A profile epoch's |G|² and tr(Σ) (docs/method.md "prediction"), for the epoch and for
    each half of it (their spread is the estimate's error); None where an epoch has too few
    steps for them."""
    if not sums:
        return None
    parts = [
        noise_parts(mean_sq_norm, mean_sq, batch_size, steps, train_size)
        for steps, mean_sq_norm, mean_sq in (sums["whole"], *sums["halves"])
    ]
    if None in parts:
        return None
    return {"sqr": parts[0][0], "trace": parts[0][1], "halves": [list(p) for p in parts[1:]]}


@dataclass
class EpochResult:
    """One trained (and then evaluated) epoch, before the scheduler's step."""

    batch_size: int  # samples per step
    steps: int  # full batches trained (the last partial one is dropped)
    train_loss: float  # mean over the epoch's steps
    grads: list  # what the scheduler observes (docs/method.md gradient_source)
    grad_norm_var: float | None = None  # profile runs: Var over steps of ‖∇L‖ (docs/method.md)
    loss_var: float | None = None  # profile runs: Var over steps of L
    epoch: int = 0
    lr: float = 0.0
    epoch_time_s: float = 0.0  # training only
    test_accuracy: float = 0.0  # percent
    eval_time_s: float = 0.0
    peak_memory_mb: float | None = None  # GPU only
    accumulated: dict = field(default_factory=dict)  # the per-step sums signals asked for
    noise_sums: dict | None = None  # profile runs: [T, s̄, ‖Ḡ‖²] of the epoch and of its halves

    def entry(self, signals: dict, decision: str, next_batch_size: int) -> dict:
        """The epoch's entry in the run record (docs/records.md), after the scheduler's step."""
        samples = self.steps * self.batch_size
        return {
            "epoch": self.epoch,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "train_loss": self.train_loss,
            "test_accuracy": self.test_accuracy,
            "epoch_time_s": self.epoch_time_s,
            "eval_time_s": self.eval_time_s,
            "steps": self.steps,
            "samples": samples,
            "samples_per_s": samples / self.epoch_time_s,
            "signals": signals,
            "decision": decision,
            "next_batch_size": next_batch_size,
            "peak_memory_mb": self.peak_memory_mb,
        }


class StepSums:
    def __init__(
        self,
        params,
        device,
        accumulate=(),
        profile=False,
        epoch_mean=False,
        world=1,
        flat=None,
        half=None,
    ):
        """`flat`: a FlatGrads behind the gradients (one process, per-step sums asked for), so
        each sum is one operation on one buffer instead of one per parameter tensor. `half`: the
        step after which the sums are copied once (profile runs), so the noise scale's parts
        are known for each half of the epoch as well, their difference its error."""
        self.params, self.accumulate, self.profile = params, accumulate, profile
        self.epoch_mean, self.flat = epoch_mean, flat
        zero = lambda: torch.zeros((), dtype=torch.float64, device=device)  # noqa: E731
        self.loss_sum, self.loss_sq, self.norm_sum, self.norm_sq = zero(), zero(), zero(), zero()
        if flat is not None:
            flat.attach()
        self.grad_sum = None
        if epoch_mean or "grad_sum" in accumulate:
            self.grad_sum = [
                torch.zeros_like(g) for g in ([flat.buffer] if flat is not None else params)
            ]
        self.norms = profile or "grad_sq_norm" in accumulate
        self.losses = [] if world > 1 else None  # one rank's losses, averaged over ranks at the end
        self.half, self.count, self.first_half = half, 0, None

    def zero_grad(self, optimizer) -> None:
        if self.flat is not None:
            self.flat.zero()
        else:
            optimizer.zero_grad(set_to_none=True)

    def add(self, loss: torch.Tensor) -> None:
        """This step's loss and gradient: device operations only, no sync."""
        loss = loss.detach().double()
        if self.losses is not None:
            self.losses.append(loss)
        else:
            self.loss_sum += loss
            if self.profile:
                self.loss_sq += loss * loss
        if self.norms:  # DDP's gradients are already the global batch's
            if self.flat is not None:
                squared = self.flat.squared_norm()
                self.norm_sum += squared.sqrt()
                self.norm_sq += squared
            else:
                grads = [p.grad for p in self.params if p.grad is not None]
                norm = torch.nn.utils.get_total_norm(grads).double()
                self.norm_sum += norm
                self.norm_sq += norm * norm
        if self.grad_sum is not None:
            torch._foreach_add_(
                self.grad_sum,
                [self.flat.buffer] if self.flat is not None else [p.grad for p in self.params],
            )
        self.count += 1
        if self.count == self.half:  # once an epoch: a copy of the sums so far, on the device
            self.first_half = (self.norm_sq.clone(), [g.clone() for g in self.grad_sum])

    def result(self, batch_size: int, steps: int) -> EpochResult:
        """The epoch in numbers: the one host sync of the epoch."""
        if self.losses:  # docs/cluster.md: the mean over every sample of every rank, step by step
            per_step = ddp.mean_over_ranks(torch.stack(self.losses))
            self.loss_sum, self.loss_sq = per_step.sum(), per_step.square().sum()
        totals = torch.stack([self.loss_sum, self.loss_sq, self.norm_sum, self.norm_sq]).tolist()
        mean_loss = totals[0] / steps
        grads = (
            [g / steps for g in self.grad_sum] if self.epoch_mean else [p.grad for p in self.params]
        )
        result = EpochResult(batch_size, steps, mean_loss, grads)
        if "grad_sq_norm" in self.accumulate:
            result.accumulated["grad_sq_norm"] = totals[3]
        if "grad_sum" in self.accumulate:
            result.accumulated["grad_sum"] = self.grad_sum
        if self.profile:  # population variances over the epoch's steps (docs/method.md)
            result.loss_var = max(0.0, totals[1] / steps - mean_loss**2)
            result.grad_norm_var = max(0.0, totals[3] / steps - (totals[2] / steps) ** 2)
        if self.first_half is not None and self.grad_sum is not None:
            result.noise_sums = self.noise_sums(totals[3], steps)
        return result

    def noise_sums(self, sq_norm: float, steps: int) -> dict:
        """[T, s̄ = mean ‖gₜ‖², ‖Ḡ‖² = ‖Σgₜ/T‖²] for the epoch and each of its halves: what the
        noise scale's two parts are computed from (docs/method.md "prediction")."""
        whole = sum(float(g.double().square().sum()) for g in self.grad_sum)
        first_norm, first_sum = self.first_half
        first = sum(float(g.double().square().sum()) for g in first_sum)
        second = sum(
            float((g - h).double().square().sum()) for g, h in zip(self.grad_sum, first_sum)
        )
        a, b = self.half, steps - self.half
        first_sq = float(first_norm)
        return {
            "whole": [steps, sq_norm / steps, whole / steps**2],
            "halves": [
                [a, first_sq / a, first / a**2],
                [b, (sq_norm - first_sq) / b, second / b**2],
            ],
        }
