"""Your own images: `data.folders: {NAME: PATH}` and NAME in study.datasets. PATH holds
train/<class>/* and test/<class>/* (PNG or JPEG), as torchvision's ImageFolder reads them. Every
image is decoded once into host memory (greyscale where all are, else RGB); the image side is the
files' own where they agree, else train.image_size of the architecture (resized on loading)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from deba_pipeline.core.errors import DebaError

EXTENSIONS = (".png", ".jpg", ".jpeg")


def _images(folder: Path) -> list:
    """The images of a class folder; hidden files (`._x.png`, a copy tool's) are not images."""
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and f.suffix.lower() in EXTENSIONS and not f.name.startswith(".")
    )


def check_folder(root) -> dict:
    """The layout of an image folder, checked before anything is decoded: {part: {class: [image
    files]}} for train and test, every class with images in both. One DebaError names the folder
    and the fix for the first thing wrong."""
    root = Path(root)
    if not root.is_dir():
        raise DebaError(f"image folder {root} does not exist: fix data.folders or create it.")
    layout = {}
    for part in ("train", "test"):
        folder = root / part
        if not folder.is_dir():
            raise DebaError(
                f"image folder {root} has no {part}/ folder: it needs "
                f"train/<class>/ and test/<class>/ with PNG or JPEG images."
            )
        # a hidden folder (.ipynb_checkpoints, .git) is a tool's, never a class
        classes = {
            p.name: _images(p)
            for p in sorted(folder.iterdir())
            if p.is_dir() and not p.name.startswith(".")
        }
        if not classes:
            raise DebaError(
                f"image folder {folder} has no class folders: put each class's "
                f"PNG or JPEG images in {folder}/<class>/."
            )
        empty = [name for name, files in classes.items() if not files]
        if empty:
            raise DebaError(
                f"image folder {folder / empty[0]} has no PNG or JPEG images: add "
                f"some or remove the folder."
            )
        layout[part] = classes
    only_train = sorted(set(layout["train"]) - set(layout["test"]))
    if only_train:
        raise DebaError(
            f"image folder {root}: class {only_train[0]!r} has training images but "
            f"no {root / 'test' / only_train[0]}/ folder: every class needs test "
            f"images."
        )
    only_test = sorted(set(layout["test"]) - set(layout["train"]))
    if only_test:
        raise DebaError(
            f"image folder {root}: class {only_test[0]!r} has test images but no "
            f"{root / 'train' / only_test[0]}/ folder: a class the model never "
            f"trains on cannot be predicted; add its training images or remove it."
        )
    return layout


def describe(root) -> tuple:
    """(training images, classes, side, channels) of an image folder, from its layout and the
    first image's header (nothing decoded): what `deba validate --estimate` needs."""
    from PIL import Image

    layout = check_folder(root)
    first = next(iter(layout["train"].values()))[0]
    with Image.open(first) as image:
        side, mode = image.size[0], image.mode
    return (
        sum(len(files) for files in layout["train"].values()),
        len(layout["train"]),
        side,
        1 if mode in GREY else 3,
    )


GREY = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N")
SIXTEEN_BIT = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # PNG's 16-bit greyscale, as PIL opens it


def _decode(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            image = image.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise DebaError(
            f"cannot read image {path} ({type(exc).__name__}): delete or replace it."
        ) from None
    if image.mode == "F" or (image.mode in SIXTEEN_BIT and image.getextrema()[1] > 65535):
        raise DebaError(
            f"image {path} holds {'floating-point' if image.mode == 'F' else '32-bit'}"
            f" pixels (PIL mode {image.mode}), whose range is unknown: save it as 8- "
            f"or 16-bit PNG or as JPEG."
        )
    return image


def _read(root: Path, part: str, layout: dict, classes: list):
    return [(_decode(f), label, f) for label, c in enumerate(classes) for f in layout[part][c]]


def _pixels(image, mode: str, side: int):
    """One image as a C×side×side float tensor in [0, 1]: 16-bit greyscale scaled by 65535 (a
    conversion to 8 bits would clip it to white), everything else through PIL's conversion."""
    import numpy as np
    import torchvision.transforms.functional as TF
    from PIL import Image

    if image.mode in SIXTEEN_BIT:
        grey = np.asarray(image, dtype=np.float32) / 65535.0
        x = TF.to_tensor(Image.fromarray(grey, mode="F").resize((side, side)))
        return x.expand(1 if mode == "L" else 3, -1, -1).clone()
    return TF.to_tensor(image.convert(mode).resize((side, side)))


def _side(images, root: Path, image_size):
    sizes = {image.size for image, _, _ in images}
    if len(sizes) == 1 and next(iter(sizes))[0] == next(iter(sizes))[1]:
        return next(iter(sizes))[0]
    if image_size:
        return image_size
    (a, b), *_ = sorted(sizes)
    example = sorted(sizes)[-1]
    raise DebaError(
        f"images in {root} have different sizes (e.g. {a}×{b} and {example[0]}×"
        f"{example[1]}) and train.image_size names no side for this architecture: "
        f"set train.image_size.<arch> (e.g. 32), or resize the files alike."
    )


def _check_memory(root: Path, count: int, channels: int, side: int) -> None:
    """Decoded float32 images must fit in host memory; the streaming path reads from there."""
    need = count * channels * side * side * 4
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.8 * free:
        raise DebaError(
            f"image folder {root} decodes to {need / 2**30:.1f} GiB of float32 images "
            f"but this machine has {free / 2**30:.1f} GiB of memory free: use fewer "
            f"or smaller images (train.image_size), or a machine with more memory."
        )


def fingerprint(root) -> str:
    """What the run key holds of an image folder: the path and content (SHA-256) of every image
    the runs read, so an image replaced by another of the same size and time retrains the runs
    that read it. The contents are read again whenever a file's size or time changes or files
    come or go, so a folder replaced during a stage is never trained on under the old key."""
    root = Path(root)
    layout = check_folder(root)
    files = sorted(f for part in layout.values() for images in part.values() for f in images)
    return _digest(root, tuple((str(f), *_stamp(f)) for f in files))


def _stamp(path: Path) -> tuple:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@cache
def _digest(root: Path, stamped: tuple) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, _, _ in stamped:
        with open(name, "rb") as handle:
            content = hashlib.file_digest(handle, "sha256").hexdigest()
        digest.update(f"{Path(name).relative_to(root)}:{content}\n".encode())
    return digest.hexdigest()[:16]


def load_folder(root, image_size=None):
    """(x_train, y_train, x_test, y_test, num_classes) from an image folder."""
    import torch

    root = Path(root)
    layout = check_folder(root)
    classes = sorted(layout["train"])
    train, test = _read(root, "train", layout, classes), _read(root, "test", layout, classes)
    side = _side(train + test, root, image_size)
    mode = "L" if all(im.mode in GREY for im, _, _ in train + test) else "RGB"
    _check_memory(root, len(train) + len(test), 1 if mode == "L" else 3, side)

    def stack(items):
        x = torch.stack([_pixels(im, mode, side) for im, _, _ in items])
        return x, torch.tensor([label for _, label, _ in items], dtype=torch.int64)

    return (*stack(train), *stack(test), len(classes))
