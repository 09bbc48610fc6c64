"""Real photographs for the image models: the sample images scikit-image ships inside its wheel.

Parity judges square crops of 12 photographs; calibration uses 4 others, so the two never share a
picture. Crops are seeded, resized to the model's input and normalised with ImageNet's mean and std.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PARITY_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
    "retina.jpg", "camera.png", "coins.png", "moon.png", "brick.png", "page.png",
)  # fmt: skip
CALIBRATION_PHOTOS = ("motorcycle_right.png", "ihc.png", "grass.png", "gravel.png")
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _photo(name: str) -> np.ndarray:
    """An RGB float image in [0, 1], read from the files in scikit-image's own package (no download)."""
    import skimage
    from skimage import io

    image = io.imread(Path(skimage.__file__).parent / "data" / name)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3].astype(np.float32)
    return image / (255.0 if image.max() > 1 else 1.0)


def photo_batch(count: int, size: int, purpose: str, seed: int = 0) -> np.ndarray:
    """`count` crops, N x 3 x size x size, from the parity or the calibration photographs."""
    from skimage.transform import resize

    names = CALIBRATION_PHOTOS if purpose == "calibration" else PARITY_PHOTOS
    photos = [_photo(name) for name in names]
    rng = np.random.default_rng([seed, 0 if purpose == "parity" else 1])
    batch = np.empty((count, 3, size, size), dtype=np.float32)
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        side = int(min(height, width) * rng.uniform(0.5, 1.0))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        crop = resize(photo[top : top + side, left : left + side], (size, size), anti_aliasing=True)
        batch[index] = ((crop - MEAN) / STD).transpose(2, 0, 1)
    return batch
