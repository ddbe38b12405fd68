"""Your own images: `data.folders: {NAME: PATH}` and NAME in study.datasets. PATH holds
train/<class>/* and test/<class>/* (PNG or JPEG), as torchvision's ImageFolder reads them. Every
image is decoded once into host memory (greyscale where all are, else RGB); the image side is the
files' own where they agree, else train.image_size of the architecture (resized on loading)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import DebaError

EXTENSIONS = (".png", ".jpg", ".jpeg")


def _classes(root: Path, part: str) -> list:
    folder = root / part
    if not folder.is_dir():
        raise DebaError(f"image folder {root} has no {part}/ folder: it needs train/<class>/ and "
                        f"test/<class>/ with PNG or JPEG images.")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes or not any(f.suffix.lower() in EXTENSIONS
                              for c in classes for f in (folder / c).iterdir()):
        raise DebaError(f"image folder {folder} is empty: put each class's PNG or JPEG images in "
                        f"{folder}/<class>/.")
    return classes


def _decode(path: Path):
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise DebaError(f"cannot read image {path} ({type(exc).__name__}): delete or replace "
                        f"it.") from None


def _read(root: Path, part: str, classes: list):
    files = [(f, label) for label, c in enumerate(classes)
             for f in sorted((root / part / c).iterdir()) if f.suffix.lower() in EXTENSIONS]
    return [(_decode(f), label, f) for f, label in files]


def _side(images, root: Path, image_size):
    sizes = {image.size for image, _, _ in images}
    if len(sizes) == 1 and next(iter(sizes))[0] == next(iter(sizes))[1]:
        return next(iter(sizes))[0]
    if image_size:
        return image_size
    (a, b), *_ = sorted(sizes)
    example = sorted(sizes)[-1]
    raise DebaError(f"images in {root} have different sizes (e.g. {a}×{b} and {example[0]}×"
                    f"{example[1]}) and train.image_size names no side for this architecture: "
                    f"set train.image_size.<arch> (e.g. 32), or resize the files alike.")


def _check_memory(root: Path, count: int, channels: int, side: int) -> None:
    """Decoded float32 images must fit in host memory; the streaming path reads from there."""
    need = count * channels * side * side * 4
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.8 * free:
        raise DebaError(f"image folder {root} decodes to {need / 2**30:.1f} GiB of float32 images "
                        f"but this machine has {free / 2**30:.1f} GiB of memory free: use fewer "
                        f"or smaller images (train.image_size), or a machine with more memory.")


def fingerprint(root) -> str:
    """What the run key holds of an image folder: every file's path, size and modification
    time, so replacing an image retrains the runs that read it."""
    import hashlib
    digest, root = hashlib.sha256(), Path(root)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_folder(root, image_size=None):
    """(x_train, y_train, x_test, y_test, num_classes) from an image folder."""
    import torchvision.transforms.functional as TF
    root = Path(root)
    if not root.is_dir():
        raise DebaError(f"image folder {root} does not exist: fix data.folders or create it.")
    classes = _classes(root, "train")
    missing = sorted(set(classes) - set(_classes(root, "test")))
    if missing:
        raise DebaError(f"image folder {root}: class {missing[0]!r} has training images but no "
                        f"{root / 'test' / missing[0]}/ folder: every class needs test images.")
    train, test = _read(root, "train", classes), _read(root, "test", classes)
    side = _side(train + test, root, image_size)
    mode = "L" if all(im.mode in ("L", "1") for im, _, _ in train + test) else "RGB"
    _check_memory(root, len(train) + len(test), 1 if mode == "L" else 3, side)

    def stack(items):
        x = torch.stack([TF.to_tensor(im.convert(mode).resize((side, side)))
                         for im, _, _ in items])
        return x, torch.tensor([label for _, label, _ in items], dtype=torch.int64)

    return (*stack(train), *stack(test), len(classes))
