"""The measurements of issue #6. Each returns {"value": ..., "goal": ..., "check": ...}."""

from __future__ import annotations

import statistics

import torch
from torch.utils.data import DataLoader, TensorDataset

from deba_pipeline.core.scheduler import DEBAScheduler
from deba_pipeline.engine.sums import NOISE_SUMS, StepSums

from .harness import interleaved, median_interval, paired, same_epoch, top_ops


def _epoch(bench, batch_size, batches=None):
    result = bench.trainer.train_epoch(batch_size, batches)
    return {"train_loss": result.train_loss, "samples": result.steps * batch_size, "result": result}


def plain(bench, batch_size):
    return _epoch(bench, batch_size)


def with_signals(bench, batch_size):
    result = _epoch(bench, batch_size)
    scheduler = DEBAScheduler(batch_size=batch_size)
    scheduler.step(result["result"].train_loss, result["result"].grads)
    return result


def with_noise_scale(bench, batch_size):
    """The epoch with the noise scale's per-step sums on, then its signal and the gns rule."""
    trainer = bench.trainer
    trainer.accumulate = ("grad_sq_norm", "grad_sum")
    try:
        result = _epoch(bench, batch_size)
    finally:
        trainer.accumulate = ()
    epoch = result["result"]
    scheduler = DEBAScheduler(batch_size=batch_size, rule="gns", signals=["gradient_noise_scale"])
    scheduler.step(epoch.train_loss, epoch.grads, steps=epoch.steps, accumulated=epoch.accumulated)
    return result


def profiled(bench, batch_size):
    bench.trainer.spec.profile = True
    try:
        return _epoch(bench, batch_size)
    finally:
        bench.trainer.spec.profile = False


def _order(bench, batch_size):
    """The epoch's batches as index tensors, from the same generator state the loop uses."""
    data = bench.trainer.data
    order = torch.randperm(data.train_size, generator=data.generator, device=data.device)
    return [
        order[i : i + batch_size] for i in range(0, data.train_size - batch_size + 1, batch_size)
    ]


def floor(bench, batch_size):
    """Pre-sliced tensors: the loop with no batching cost at all (slicing done outside)."""
    return _epoch(bench, batch_size, bench.floor_batches)


def dataloader(bench, batch_size):
    """The usual way: a DataLoader over a TensorDataset (same batches, collated per sample)."""
    return _epoch(bench, batch_size, bench.loader)


def streamed(bench, batch_size):
    """The same epoch streamed from host memory through the DataLoader path."""
    return _epoch(bench, batch_size, bench.streaming.train_batches(batch_size))


def streaming(bench, batch_size=64, repeats=5):
    """The streaming path (DataLoader, 2 workers) over the device-resident one, same batches."""
    from deba_pipeline.engine.data import Split, StreamingData

    data = bench.trainer.data
    split = Split(
        data.x_train.cpu(),
        data.y_train.cpu(),
        data.x_test.cpu(),
        data.y_test.cpu(),
        data.num_classes,
    )
    bench.streaming = StreamingData(split, bench.device, seed=0, workers=2)
    bench.streaming.generator = data.generator  # the same permutations, restored alike
    m = interleaved(bench, {"device": plain, "stream": streamed}, repeats, batch_size)
    same_epoch(m["results"])
    return against_goal(paired(m, "stream", "device"), None)


def against_goal(value, goal):
    """A measurement beside its goal (an upper bound). Given the paired ratios of every repeat,
    it carries their median and its 90% interval (harness.median_interval), and `met` is True
    or False only where the interval lies on one side of the goal, None (undecided) otherwise;
    given one exact number (a memory ratio), the number decides. No goal: `met` is None."""
    if isinstance(value, (list, tuple)):
        ci = median_interval(value)
        middle = statistics.median(value)
        met = (
            None
            if goal is None or ci is None
            else True
            if ci[1] <= goal
            else False
            if ci[0] > goal
            else None
        )
        return {
            "value": round(middle, 4),
            "interval": None if ci is None else [round(ci[0], 4), round(ci[1], 4)],
            "repeats": len(value),
            "goal": goal,
            "met": met,
        }
    return {"value": round(value, 4), "goal": goal, "met": None if goal is None else value <= goal}


def _overhead(bench, variant, goal, batch_size, repeats):
    """`variant`'s epoch over the plain fixed-batch epoch, with a profile if the goal is missed."""
    m = interleaved(bench, {"fixed": plain, "variant": variant}, repeats, batch_size)
    same_epoch(m["results"])
    out = against_goal(paired(m, "variant", "fixed"), goal)
    if out["met"] is not True:
        out["profile"] = top_ops(variant, bench, batch_size, baseline=plain)
    return out


def signal_overhead(bench, batch_size=64, repeats=5):
    return _overhead(bench, with_signals, 1.01, batch_size, repeats)


def noise_scale_overhead(bench, batch_size=64, repeats=5):
    return _overhead(bench, with_noise_scale, 1.03, batch_size, repeats)


def scheduler_share(bench, batch_size=64, repeats=5):
    """What the scheduler adds, timed directly as a share of a plain epoch (goals ≤ 0.5 %, and
    ≤ 3 % with the noise scale): DEBAScheduler.step, and for the noise scale its step plus the
    loop's per-step sums (‖gₜ‖² and Σgₜ on the flat gradient buffer) once per step."""
    trainer = bench.trainer
    trainer.accumulate = ("grad_sq_norm", "grad_sum")
    try:
        warm = _epoch(bench, batch_size)["result"]  # makes the flat buffer, warms every path
    finally:
        trainer.accumulate = ()
    flat, steps = trainer.flat_grads, warm.steps
    signals, noise = [], []
    for _ in range(repeats):
        seconds, done = bench.timed(plain, batch_size)
        epoch = done["result"]
        deba = DEBAScheduler(batch_size=batch_size)
        step_s, _ = bench.timed_here(_deba_step, deba, epoch)
        gns = DEBAScheduler(batch_size=batch_size, rule="gns", signals=["gradient_noise_scale"])
        sums_s, _ = bench.timed_here(_per_step_sums, flat, steps)
        gns_s, _ = bench.timed_here(_gns_step, gns, warm, trainer.data.train_size)
        signals.append(step_s / seconds)
        noise.append((sums_s + gns_s) / seconds)
    return against_goal(signals, 0.005), against_goal(noise, 0.03)


def profile_share(bench, batch_size=64, repeats=5):
    """What a profile epoch adds to a plain one, timed directly as a share of it (goal ≤ 3 %,
    docs/method.md "prediction"): the loop's per-step profile sums (the loss's and ‖gₜ‖'s
    moments, Σ‖gₜ‖² and Σgₜ on the flat buffer, the half-epoch copy) and their one sync."""
    trainer = bench.trainer
    trainer.accumulate = NOISE_SUMS
    try:
        warm = _epoch(bench, batch_size)["result"]  # makes the flat buffer, warms every path
    finally:
        trainer.accumulate = ()
    shares = []
    for _ in range(repeats):
        seconds, _ = bench.timed(plain, batch_size)
        sums_s, _ = bench.timed_here(_profile_sums, trainer, warm.steps, batch_size)
        shares.append(sums_s / seconds)
    return against_goal(shares, 0.03)


def _profile_sums(bench, trainer, steps, batch_size):
    sums = StepSums(
        trainer.params,
        trainer.device,
        NOISE_SUMS,
        profile=True,
        flat=trainer.flat_grads,
        half=steps // 2,
    )
    loss = torch.ones((), device=trainer.device)
    for _ in range(steps):
        sums.add(loss)
    return sums.result(batch_size, steps)


def _deba_step(bench, scheduler, epoch):
    return scheduler.step(epoch.train_loss, epoch.grads)


def _per_step_sums(bench, flat, steps):
    """What the loop adds to each step for the noise scale: ‖gₜ‖² and Σgₜ on the flat buffer."""
    grad_sum = [torch.zeros_like(flat.buffer)]
    for _ in range(steps):
        flat.squared_norm()
        torch._foreach_add_(grad_sum, [flat.buffer])


def _gns_step(bench, scheduler, epoch, dataset_size):
    return scheduler.step(
        epoch.train_loss,
        epoch.grads,
        steps=epoch.steps,
        accumulated=epoch.accumulated,
        dataset_size=dataset_size,
    )


def profile_overhead(bench, batch_size=64, repeats=5):
    return _overhead(bench, profiled, 1.05, batch_size, repeats)


def loaders(bench, batch_size=64, repeats=15):
    bench.restore()
    index = _order(bench, batch_size)
    data = bench.trainer.data
    bench.floor_batches = [(data.x_train[i], data.y_train[i]) for i in index]
    dataset = TensorDataset(data.x_train.cpu(), data.y_train.cpu())
    to_device = bench.device

    def collate(samples):
        x, y = torch.utils.data.default_collate(samples)
        return x.to(to_device, non_blocking=True), y.to(to_device, non_blocking=True)

    bench.loader = DataLoader(
        dataset, batch_sampler=[i.tolist() for i in index], collate_fn=collate
    )
    m = interleaved(
        bench, {"ours": plain, "floor": floor, "dataloader": dataloader}, repeats, batch_size
    )
    same_epoch(m["results"])
    vs_floor = against_goal(paired(m, "ours", "floor"), 1.02)
    if vs_floor["met"] is not True:
        vs_floor["profile"] = top_ops(plain, bench, batch_size, baseline=floor)
    return vs_floor, against_goal(paired(m, "dataloader", "ours"), None)


def batch_change(bench, small=64, large=96, repeats=5):
    """The first epoch at a new size over the steady epoch that follows it at that size."""
    ratios = []
    for round_ in range(repeats + 1):  # round 0 warms up
        bench.restore()
        _epoch(bench, small)
        first = bench.timed_here(_epoch, large)
        steady = bench.timed_here(_epoch, large)
        if first[1]["samples"] != steady[1]["samples"]:
            raise AssertionError("first and steady epochs trained different sample counts")
        if round_:
            ratios.append(first[0] / steady[0])
    return against_goal(ratios, 1.05)
