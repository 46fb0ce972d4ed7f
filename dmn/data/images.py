"""Images as data: how they are stored in Parquet (raw bytes with their shape and dtype), cut into the regions
the visual input module reads, and read from a request (an array, PNG or JPEG bytes, base64 text or a path).

Dimension letters: N images, H x W pixels, C channels (RGB), g the grid (g x g regions), R = g*g regions.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

import numpy as np
import torch

from dmn.errors import ConfigError

ENCODED_PREFIXES = (b"\x89PNG", b"\xff\xd8\xff")  # PNG and JPEG files start so


def to_cells(image: np.ndarray) -> dict:
    """An (H, W, C) array -> the Parquet cells `image` (bytes), `image_shape`, `image_dtype`."""
    return {"image": image.tobytes(), "image_shape": list(image.shape), "image_dtype": str(image.dtype)}


def from_cells(row: dict) -> np.ndarray:
    """The Parquet cells of `to_cells` (or a request's `image_array`) -> the (H, W, C) array."""
    if "image_array" in row:
        return row["image_array"]
    return np.frombuffer(row["image"], dtype=row["image_dtype"]).reshape(row["image_shape"])


def snake_order(grid: int) -> list[tuple[int, int]]:
    """(row, column) of the g x g cells in snake order: the first row left to right, the next right to left...
    (DMN+ feeds the regions to the input fusion so, keeping neighbours next to each other)."""
    return [(r, c) for r in range(grid) for c in (range(grid) if r % 2 == 0 else reversed(range(grid)))]


def image_regions(images: list[np.ndarray], grid: int) -> torch.Tensor:
    """(H, W, C) uint8 images, all of one shape -> (N, R, C, H/g, W/g) uint8 regions in snake order; H and W
    must be multiples of g."""
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # (N, C, H, W)
    n, channels, height, width = stacked.shape
    h, w = height // grid, width // grid
    cells = stacked.reshape(n, channels, grid, h, grid, w).permute(0, 2, 4, 1, 3, 5)  # (N, g, g, C, h, w)
    rows, columns = zip(*snake_order(grid))
    return cells[:, list(rows), list(columns)].contiguous()  # (N, R, C, h, w)


def read_image(value, shape: tuple[int, ...], resize: bool = False) -> np.ndarray:
    """A request's image -> an (H, W, C) uint8 array of `shape` (the one the model was trained on).

    Accepts an array or nested lists (H, W, C) of uint8 values, PNG or JPEG bytes, base64 text of such bytes
    (JSON requests), or the path of an image file. With `resize`, an image of another size is resized as the
    training images were (bilinear); without, it is refused. ConfigError saying what is wrong (the caller
    names the row and column)."""
    if value is None:
        raise ConfigError("no image given")
    if isinstance(value, str):
        path = _existing_file(value)
        if path is None:
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"{value[:60]!r} is neither an image file nor base64 image bytes") from None
        else:
            try:
                value = path.read_bytes()
            except OSError as error:
                raise ConfigError(f"{path}: {error.strerror}") from None
    if isinstance(value, bytes | bytearray):
        array = _decoded(bytes(value))
    else:
        try:
            array = np.asarray(value)
        except ValueError:  # nested lists of different lengths
            raise ConfigError("nested lists of different lengths; an (H, W, C) array of pixels is needed") from None
        if array.dtype == object or not (np.issubdtype(array.dtype, np.integer) and array.size):
            raise ConfigError(f"an array of uint8 pixels is needed, got dtype {array.dtype}")
        if array.min() < 0 or array.max() > 255:
            raise ConfigError("pixel values must lie in 0..255")
        array = array.astype(np.uint8)
    if array.shape != tuple(shape) and resize and array.ndim == 3 and array.shape[-1] == shape[-1]:
        array = resized(array, shape)
    if array.shape != tuple(shape):
        raise ConfigError(f"shape {array.shape}; the model reads images of shape {tuple(shape)} (H, W, C) uint8")
    return array


def resized(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An (H, W, C) uint8 image resized to `shape`'s H and W, bilinear (as VQA v2's training images are)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def _existing_file(text: str) -> Path | None:
    """`text` as the path of a file, or None (also for text no file system takes as a path: long base64)."""
    try:
        path = Path(text)
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


def _decoded(data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not data.startswith(ENCODED_PREFIXES):
        raise ConfigError("bytes that are not a PNG or JPEG image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as error:
        raise ConfigError(f"unreadable image bytes ({error})") from None


def png_bytes(image: np.ndarray) -> bytes:
    """An (H, W, C) uint8 array as PNG file bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
