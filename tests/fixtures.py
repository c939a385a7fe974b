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
NUMBERED_CLASSES = [f'class_{i}' for i in range(10)]  # the `exported` fixture's classes
SMALL_DISK_BYTES = 4 * 2**20  # the `small_disk` fixture's tmpfs (tests/conftest.py)


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


def make_messy_tree(root: str, outside_file: str) -> dict:
  """A tree with every kind of trouble a real folder has. Returns what to expect.

  Usable: 10 images per class in `cat` and `dog` (including a grayscale PNG,
  an RGBA PNG and a 17x45 JPEG). Undecodable (kept by the scan, skipped by
  the decode check): a truncated JPEG and a text file named .jpg. Ignored by
  the scan: .git/, a stray top-level file, an empty class folder, a nested
  folder, a .txt file and a symlink to `outside_file`.
  """
  rng = np.random.default_rng(1)
  make_image_tree(root, per_class=8, classes=('cat', 'dog'), seed=1)
  cat = os.path.join(root, 'train', 'cat')
  gray = Image.fromarray(synthetic_image(3, rng)[..., 0], mode='L')
  gray.save(os.path.join(cat, 'gray.png'))
  Image.fromarray(np.dstack([synthetic_image(3, rng), np.full((32, 32), 200, np.uint8)]),
                  mode='RGBA').save(os.path.join(cat, 'rgba.png'))
  dog = os.path.join(root, 'train', 'dog')
  with open(os.path.join(dog, 'odd.jpg'), 'wb') as f:
    f.write(encode(synthetic_image(5, rng, 45)[:17], 'jpg'))
  with open(os.path.join(dog, 'wide.jpeg'), 'wb') as f:
    f.write(encode(np.concatenate([synthetic_image(5, rng)] * 3, axis=1), 'jpg'))
  jpeg = encode(synthetic_image(5, rng, 64), 'jpg')
  with open(os.path.join(dog, 'truncated.jpg'), 'wb') as f:
    f.write(jpeg[:len(jpeg) // 2])
  with open(os.path.join(cat, 'notes.jpg'), 'w') as f:
    f.write('this is not an image')
  Image.fromarray(synthetic_image(3, rng)).save(os.path.join(cat, 'bitmap.jpg'), format='BMP')
  with open(os.path.join(cat, 'readme.txt'), 'w') as f:
    f.write('stray text')
  os.makedirs(os.path.join(cat, 'nested'))
  os.makedirs(os.path.join(root, 'train', 'empty_class'))
  os.makedirs(os.path.join(root, '.git', 'objects'))
  with open(os.path.join(root, '.git', 'objects', 'x.jpg'), 'wb') as f:
    f.write(jpeg)
  with open(os.path.join(root, 'LICENSE.txt'), 'w') as f:
    f.write('stray file')
  os.symlink(outside_file, os.path.join(dog, 'escape.jpg'))
  return {
      'classes': ['cat', 'dog'],
      'good': 8 + 8 + 4,  # 16 generated + gray, rgba, odd, wide
      'bad': {'train/dog/truncated.jpg', 'train/cat/notes.jpg', 'train/cat/bitmap.jpg'},
      'ignored': {'.git', 'LICENSE.txt', 'train/empty_class', 'train/cat/nested',
                  'train/cat/readme.txt', 'train/dog/escape.jpg'},
  }


def fill_disk(directory: str, leave: int = 0) -> str:
  """Writes `directory`/filler until at most `leave` bytes are free. Returns its path.

  With `leave=0` it writes until the filesystem says ENOSPC.
  """
  import errno  # pylint: disable=g-import-not-at-top
  path = os.path.join(directory, 'filler')
  stat = os.statvfs(directory)
  size = max(0, stat.f_bfree * stat.f_frsize - leave)
  chunk = b'\0' * 65536
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
  try:
    written = 0
    while leave == 0 or written < size:
      try:
        written += os.write(fd, chunk[:size - written] if leave else chunk)
      except OSError as e:
        if e.errno != errno.ENOSPC:
          raise
        break
  finally:
    os.close(fd)
  return path


def fake_model_dir(path: str, size: int, seed: int = 0) -> str:
  """A SavedModel-shaped directory of `size` random bytes (a push copies it as is)."""
  os.makedirs(os.path.join(path, 'variables'), exist_ok=True)
  data = np.random.default_rng(seed).bytes(size)
  with open(os.path.join(path, 'saved_model.pb'), 'wb') as f:
    f.write(data[:1024])
  with open(os.path.join(path, 'variables', 'variables.data-00000-of-00001'), 'wb') as f:
    f.write(data[1024:])
  return path
