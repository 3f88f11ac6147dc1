"""What the datasets are on disk (SPEC §1): file names, md5s, folders, classes, and DataError.

A leaf module, so the IDX reader, the providers and the cache logic can all import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
SPLIT_FILES = {"train": (TRAIN_IMAGES, TRAIN_LABELS), "test": (TEST_IMAGES, TEST_LABELS)}


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is on disk: its cache folder, its files and their md5s (SPEC §1)."""

    name: str
    folder: str
    files: dict[str, str]  # raw file name -> md5 of the uncompressed IDX file
    splits: dict[str, tuple[str, str]]  # split -> (images file, labels file)
    num_classes: int = 10
    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))

    def raw_dir(self, root: Path) -> Path:
        """The torchvision-compatible raw folder under ``root``."""
        return Path(root) / self.folder / "raw"


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        folder="MNIST",
        files={
            TRAIN_IMAGES: "6bbc9ace898e44ae57da46a324031adb",
            TRAIN_LABELS: "a25bea736e30d166cdddb491f175f624",
            TEST_IMAGES: "2646ac647ad5339dbf082846283269ea",
            TEST_LABELS: "27ae3e4e09519cfbb04c329615203637",
        },
        splits=dict(SPLIT_FILES),
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        folder="FashionMNIST",
        files={
            TRAIN_IMAGES: "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            TRAIN_LABELS: "9018921c3c673c538a1fc5bad174d6f9",
            TEST_IMAGES: "8181f5470baa50b63fa0f6fddb340f0a",
            TEST_LABELS: "15d484375f8d13e6eb1aabb0c3f46965",
        },
        splits=dict(SPLIT_FILES),
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
    ),
}


class DataError(Exception):
    """A data problem the user fixes: one line naming the file, what was tried and the fix."""
