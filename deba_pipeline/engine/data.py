"""Datasets by name, held whole on the training device and batched by index (as airbench does).

An epoch is one seeded permutation read in slices, so a new batch size costs nothing: no loader,
no workers, no copy of the data. The last partial batch is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DebaError

CIFAR = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("CIFAR100", "cifar-100-python", "cifar-100-python.tar.gz",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}


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


def load_split(name: str, seed: int, data_cfg) -> Split:
    """The named dataset, split and normalised; the split is fixed by `seed` where it is ours."""
    if name == "digits":
        x, y = _digits()
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(y), generator=gen)
        n_test = int(round(len(y) * data_cfg.test_fraction))
        test, train = order[:n_test], order[n_test:]
        split = (x[train], y[train], x[test], y[test], 10)
    elif name == "synthetic":
        split = _synthetic(data_cfg.synthetic, seed)
    elif name in CIFAR:
        split = _cifar(name, Path(data_cfg.root), data_cfg.download)
    else:
        raise ConfigError(f"unknown dataset {name!r}: use one of digits, synthetic, cifar10, cifar100.")
    x_train, y_train, x_test, y_test, num_classes = split
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return Split((x_train - mean) / std, y_train, (x_test - mean) / std, y_test, num_classes)


def _digits():
    from sklearn.datasets import load_digits  # 1,797 real 8×8 images, shipped with scikit-learn
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(bunch.target, dtype=torch.int64)


def _synthetic(cfg, seed):
    """Learnable CIFAR-shaped data: one fixed random pattern per class, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    shape = (cfg.channels, cfg.image_size, cfg.image_size)
    patterns = torch.randn((cfg.num_classes, *shape), generator=gen)

    def make(n):
        labels = torch.randint(cfg.num_classes, (n,), generator=gen)
        return patterns[labels] * 0.5 + torch.randn((n, *shape), generator=gen), labels

    return (*make(cfg.train_size), *make(cfg.test_size), cfg.num_classes)


def _cifar(name, root: Path, download: bool):
    import torchvision
    cls_name, folder, archive, url = CIFAR[name]
    cls = getattr(torchvision.datasets, cls_name)
    place = (f"Fetch {url} on a machine with network and place {archive} (or its extracted "
             f"{folder}/ folder) in {root}/, or set data.root to where it is.")
    sets = []
    for train in (True, False):
        try:
            sets.append(cls(str(root), train=train, download=False))
            continue
        except RuntimeError:  # torchvision: "Dataset not found or corrupted"
            if (root / folder).is_dir():
                raise DebaError(f"{name} files in {root / folder} are corrupt or truncated "
                                f"(checksum mismatch): delete that folder. {place}") from None
        if not download:
            raise DebaError(f"{name} is not in {root / folder} and data.download is false. "
                            f"{place}")
        try:
            sets.append(cls(str(root), train=train, download=True))
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DebaError(f"{name} is not in {root / folder} and could not be downloaded "
                            f"({reason}). {place}") from None
    out = []
    for ds in sets:
        x = torch.tensor(ds.data).permute(0, 3, 1, 2).float() / 255.0
        out += [x, torch.tensor(ds.targets, dtype=torch.int64)]
    return (*out, len(sets[0].classes))


class DeviceData:
    """The whole split on `device` (or in pinned host memory if it does not fit), read by index."""

    def __init__(self, split: Split, device: torch.device, seed: int, augment: bool = False,
                 image_size: int | None = None):
        self.device, self.augment, self.num_classes = device, augment, split.num_classes
        self.image_size = image_size if image_size and image_size != split.shape[-1] else None
        try:
            tensors = [t.to(device) for t in (split.x_train, split.y_train, split.x_test, split.y_test)]
            self.on_device = True
        except torch.OutOfMemoryError:
            tensors = [t.pin_memory() for t in (split.x_train, split.y_train, split.x_test, split.y_test)]
            self.on_device = False
        self.x_train, self.y_train, self.x_test, self.y_test = tensors
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.rank, self.world = 0, 1  # SPEC §7: a rank's share of every global batch

    def shard(self, rank: int, world: int) -> None:
        """Take rank `rank`'s B/world samples of each global batch of B from now on; every rank
        draws the same permutation, so each sample is seen once an epoch across ranks."""
        self.rank, self.world = rank, world

    @property
    def train_size(self) -> int:
        return len(self.y_train)

    def train_batches(self, batch_size: int):
        """One epoch: a fresh permutation, sliced into full (global) batches of `batch_size`."""
        if batch_size > self.train_size:
            raise DebaError(f"batch size {batch_size} is larger than the training set "
                            f"({self.train_size} samples): lower train.batch_size or deba.max_batch.")
        order = torch.randperm(self.train_size, generator=self.generator, device=self.device)
        share = batch_size // self.world
        for start in range(0, self.train_size - batch_size + 1, batch_size):
            mine = start + self.rank * share
            index = order[mine:mine + share]
            x, y = self._take(self.x_train, index), self._take(self.y_train, index)
            if self.augment:
                x = self._augment(x)
            yield self._resize(x), y

    def test_batches(self, batch_size: int):
        for start in range(0, len(self.y_test), batch_size):
            x = self.x_test[start:start + batch_size].to(self.device, non_blocking=True)
            yield self._resize(x), self.y_test[start:start + batch_size].to(self.device, non_blocking=True)

    def _take(self, tensor, index):
        if self.on_device:
            return tensor[index]
        return tensor[index.cpu()].to(self.device, non_blocking=True)

    def _resize(self, x):
        if self.image_size is None:
            return x
        return F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                             align_corners=False)

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
