"""The built-in datasets, registered through the `deba` entry point like any plugin's: digits
(scikit-learn's 1,797 real 8×8 images, bundled), synthetic (CIFAR-shaped, learnable), cifar10 and
cifar100 (torchvision; downloaded when data.download allows)."""

from __future__ import annotations

from pathlib import Path

from deba_pipeline.core.base import Dataset
from deba_pipeline.core.errors import DebaError

CIFAR = {
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": (
        "CIFAR100",
        "cifar-100-python",
        "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}


class Digits(Dataset):
    name = "digits"

    def load(self, seed, data, image_size=None):
        import torch  # here and below: listing the datasets does not import torch

        x, y = _digits()
        gen = torch.Generator().manual_seed(seed)  # our split: fixed by the seed
        order = torch.randperm(len(y), generator=gen)
        n_test = int(round(len(y) * data.test_fraction))
        test, train = order[:n_test], order[n_test:]
        return x[train], y[train], x[test], y[test], 10


class Synthetic(Dataset):
    name = "synthetic"

    def load(self, seed, data, image_size=None):
        return _synthetic(data.synthetic, seed)


class Cifar10(Dataset):
    name = "cifar10"

    def load(self, seed, data, image_size=None):
        return _cifar(self.name, Path(data.root), data.download)


class Cifar100(Cifar10):
    name = "cifar100"


def _digits():
    import torch
    from sklearn.datasets import load_digits  # 1,797 real 8×8 images, shipped with scikit-learn

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(bunch.target, dtype=torch.int64)


def _synthetic(cfg, seed):
    """Learnable CIFAR-shaped data: one fixed random pattern per class, plus noise."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    shape = (cfg.channels, cfg.image_size, cfg.image_size)
    patterns = torch.randn((cfg.num_classes, *shape), generator=gen)

    def make(n):
        labels = torch.randint(cfg.num_classes, (n,), generator=gen)
        return patterns[labels] * 0.5 + torch.randn((n, *shape), generator=gen), labels

    return (*make(cfg.train_size), *make(cfg.test_size), cfg.num_classes)


def _cifar(name, root: Path, download: bool):
    import torch
    import torchvision

    cls_name, folder, archive, url = CIFAR[name]
    cls = getattr(torchvision.datasets, cls_name)
    place = (
        f"Fetch {url} on a machine with network and place {archive} (or its extracted "
        f"{folder}/ folder) in {root}/, or set data.root to where it is."
    )
    sets = []
    for train in (True, False):
        try:
            sets.append(cls(str(root), train=train, download=False))
            continue
        except RuntimeError:  # torchvision: "Dataset not found or corrupted"
            if (root / folder).is_dir():
                raise DebaError(
                    f"{name} files in {root / folder} are corrupt or truncated "
                    f"(checksum mismatch): delete that folder. {place}"
                ) from None
        if not download:
            raise DebaError(f"{name} is not in {root / folder} and data.download is false. {place}")
        try:
            sets.append(cls(str(root), train=train, download=True))
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DebaError(
                f"{name} is not in {root / folder} and could not be downloaded ({reason}). {place}"
            ) from None
    out = []
    for ds in sets:
        x = torch.tensor(ds.data).permute(0, 3, 1, 2).float() / 255.0
        out += [x, torch.tensor(ds.targets, dtype=torch.int64)]
    return (*out, len(sets[0].classes))
