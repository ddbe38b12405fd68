"""Datasets by name (registered plugins, or image folders), held whole on the training device and
batched by index, as airbench does: an epoch is one seeded permutation read in slices, so a new
batch size costs nothing. Data that does not fit streams from host memory through a DataLoader
whose batch sampler changes size between epochs without being rebuilt. The last partial batch
is dropped either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deba_pipeline.core.errors import DebaError


@dataclass
class Split:
    x_train: torch.Tensor  # float32, N×C×H×W, normalised with training-split statistics
    y_train: torch.Tensor  # int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def shape(self):
        return tuple(self.x_train.shape[1:])


def load_split(name: str, seed: int, data_cfg, image_size: int | None = None) -> Split:
    """The named dataset (a registered one, or an image folder of data.folders), normalised with
    its training split's statistics; the split is fixed by `seed` where it is ours."""
    if name in data_cfg.folders:
        from deba_pipeline.engine.datasets.folders import load_folder

        split = load_folder(data_cfg.folders[name], image_size)
    else:
        from deba_pipeline.core import plugins

        split = plugins.create("dataset", name).load(seed, data_cfg, image_size)
    x_train, y_train, x_test, y_test, num_classes = split
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return Split((x_train - mean) / std, y_train, (x_test - mean) / std, y_test, num_classes)


def hold(split: Split, device, seed: int, data_cfg, image_size=None):
    """The split on the device where it fits (or `data.placement: device` says so), else
    streamed from host memory (`placement: stream` forces it)."""
    if data_cfg.placement != "stream":
        try:
            return DeviceData(split, device, seed, data_cfg.augment, image_size)
        except torch.OutOfMemoryError:
            if data_cfg.placement == "device":
                raise DebaError(
                    f"the dataset ({tuple(split.x_train.shape)} training images) "
                    f"does not fit on {device}: set data.placement to auto or "
                    f"stream."
                ) from None
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return StreamingData(split, device, seed, data_cfg.augment, image_size, data_cfg.workers)


class DeviceData:
    """The whole split on `device`, read by index: a new batch size costs nothing."""

    path = "device"  # what the run record says ran
    prefetched = 0  # batches ready before the loop asks: none, each is gathered when asked

    def __init__(
        self,
        split: Split,
        device: torch.device,
        seed: int,
        augment: bool = False,
        image_size: int | None = None,
    ):
        self._setup(split, device, seed, augment, image_size)
        self.x_train, self.y_train, self.x_test, self.y_test = (
            t.to(device) for t in (split.x_train, split.y_train, split.x_test, split.y_test)
        )

    def _setup(self, split, device, seed, augment, image_size) -> None:
        self.device, self.augment, self.num_classes = device, augment, split.num_classes
        self.image_size = image_size if image_size and image_size != split.shape[-1] else None
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.rank, self.world = 0, 1  # docs/cluster.md: a rank's share of every global batch

    def shard(self, rank: int, world: int) -> None:
        """Take rank `rank`'s B/world samples of each global batch of B from now on; every rank
        draws the same permutation, so each sample is seen once an epoch across ranks."""
        self.rank, self.world = rank, world

    @property
    def train_size(self) -> int:
        return len(self.y_train)

    def _epoch_order(self, batch_size: int):
        """This epoch's permutation and this rank's share of each global batch."""
        if batch_size > self.train_size:
            raise DebaError(
                f"batch size {batch_size} is larger than the training set "
                f"({self.train_size} samples): lower train.batch_size or "
                f"deba.max_batch."
            )
        order = torch.randperm(self.train_size, generator=self.generator, device=self.device)
        return order, batch_size // self.world

    def train_batches(self, batch_size: int):
        """One epoch: a fresh permutation, sliced into full (global) batches of `batch_size`."""
        order, share = self._epoch_order(batch_size)
        for start in range(0, self.train_size - batch_size + 1, batch_size):
            mine = start + self.rank * share
            index = order[mine : mine + share]
            x, y = self._take(self.x_train, index), self._take(self.y_train, index)
            if self.augment:
                x = self._augment(x)
            yield self._resize(x), y

    def test_batches(self, batch_size: int):
        for start in range(0, len(self.y_test), batch_size):
            x = self.x_test[start : start + batch_size].to(self.device, non_blocking=True)
            y = self.y_test[start : start + batch_size].to(self.device, non_blocking=True)
            yield self._resize(x), y

    def _take(self, tensor, index):
        return tensor[index]

    def _resize(self, x):
        if self.image_size is None:
            return x
        return F.interpolate(
            x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )

    def _augment(self, x, pad: int = 4):
        """Random crop with `pad` pixels of zero padding and a horizontal flip, per sample."""
        n, _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=self.generator, device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=self.generator, device=x.device)
        rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).expand(n, h, w)
        cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).expand(n, h, w)
        batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
        cropped = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
        flip = torch.rand(n, generator=self.generator, device=x.device) < 0.5
        return torch.where(flip.view(n, 1, 1, 1), cropped.flip(3), cropped)


class _EpochBatches(torch.utils.data.Sampler):
    """This epoch's index lists: `order`, `size` and this rank's share are set before each
    epoch, so the DataLoader and its workers are never rebuilt when the batch size changes."""

    def __init__(self):
        self.order, self.size, self.offset, self.share = torch.arange(0), 1, 0, 1

    def __iter__(self):
        for start in range(0, len(self.order) - self.size + 1, self.size):
            yield self.order[start + self.offset : start + self.offset + self.share].tolist()

    def __len__(self):
        return len(self.order) // self.size


class _HostTensors(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def __getitems__(self, index):  # a whole batch in one gather, not sample by sample
        return self.x[index], self.y[index]


def _as_is(batch):
    return batch


class StreamingData(DeviceData):
    """The split in host memory, streamed through a DataLoader with worker processes (and
    pinned memory on CUDA). The same seed draws the same permutation as DeviceData, so both
    paths give the same batches in the same order."""

    path = "stream"

    def __init__(
        self,
        split: Split,
        device: torch.device,
        seed: int,
        augment: bool = False,
        image_size: int | None = None,
        workers: int = 2,
    ):
        self._setup(split, device, seed, augment, image_size)
        self.x_train, self.y_train = split.x_train.share_memory_(), split.y_train.share_memory_()
        self.x_test, self.y_test = split.x_test, split.y_test
        self.sampler = _EpochBatches()
        self.loader = torch.utils.data.DataLoader(
            _HostTensors(self.x_train, self.y_train),
            batch_sampler=self.sampler,
            collate_fn=_as_is,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
        )
        self.prefetched = workers * (self.loader.prefetch_factor or 0)  # made ahead of the loop

    def train_batches(self, batch_size: int):
        order, share = self._epoch_order(batch_size)
        self.sampler.order, self.sampler.size = order.cpu(), batch_size
        self.sampler.offset, self.sampler.share = self.rank * share, share
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.augment:
                x = self._augment(x)
            yield self._resize(x), y
