"""TensorBoard scalars and image grids, and PNG files of the same grids."""

import numpy as np
import tensorflow as tf

from defense_gan.files import write_bytes_atomic


def image_grid(images, rows: int | None = None, pixel_range=(0.0, 1.0)) -> np.ndarray:
    """float [N, H, W, C] in pixel_range ([0, 1]; CelebA [-1, 1]) -> uint8
    [rows*H + pad, cols*W + pad, C] with 1-px gaps."""
    low, high = pixel_range
    images = (np.asarray(images, np.float32) - low) / (high - low)
    n, h, w, c = images.shape
    rows = rows or int(np.ceil(np.sqrt(n)))
    cols = int(np.ceil(n / rows))
    grid = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
    for i in range(n):
        r, col = divmod(i, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = \
            images[i]
    return (np.clip(grid, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_png(path: str, grid: np.ndarray) -> None:
    """Write a uint8 [H, W, C] grid as PNG (atomically)."""
    write_bytes_atomic(path, tf.io.encode_png(grid).numpy())


def scalars(writer, step: int, values: dict) -> None:
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, float(value))


def image(writer, step: int, name: str, grid: np.ndarray) -> None:
    with writer.as_default(step=step):
        tf.summary.image(name, grid[None], max_outputs=1)
