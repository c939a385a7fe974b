"""Small, real image data that the tests generate (no downloads, nothing shipped).

`make_image_tree` writes a class-folder tree of JPEG and PNG files whose
classes differ in color and stripe direction, so a tiny model can learn them
above chance. Deterministic for a given seed.
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np
from PIL import Image

CLASS_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer',
               'dog', 'frog', 'horse', 'ship', 'truck')


def synthetic_image(label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
  """uint8 [size, size, 3]: a class color plus stripes whose angle encodes the class."""
  hue = np.array([(label * 37) % 256, (label * 91 + 60) % 256, (label * 151 + 120) % 256])
  y, x = np.mgrid[0:size, 0:size]
  angle = np.pi * label / 10
  stripes = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 0.6)[..., None]
  image = hue * (0.6 + 0.3 * stripes) + rng.normal(0, 12, (size, size, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format={'jpg': 'JPEG', 'png': 'PNG'}[fmt])
  return buffer.getvalue()


def make_image_tree(root: str, per_class: int = 20, classes: Sequence[str] = CLASS_NAMES,
                    splits: Sequence[str] = ('train',), size: int = 32, seed: int = 0) -> str:
  """ROOT/<split>/<class>/<n>.jpg|png; every fifth image is a PNG. Returns ROOT."""
  rng = np.random.default_rng(seed)
  for split in splits:
    for label, name in enumerate(classes):
      folder = os.path.join(root, split, name)
      os.makedirs(folder, exist_ok=True)
      for i in range(per_class):
        fmt = 'png' if i % 5 == 4 else 'jpg'
        with open(os.path.join(folder, f'{i:04d}.{fmt}'), 'wb') as f:
          f.write(encode(synthetic_image(label, rng, size), fmt))
  return root
