"""Small, real image data that the tests generate (no downloads, nothing shipped).

`make_image_tree` writes a class-folder tree of JPEG and PNG files whose
classes differ in color and stripe direction, so a tiny model can learn them
above chance. Deterministic for a given seed.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import threading
import zlib
from typing import Dict, List, Sequence, Tuple

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


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
  return (struct.pack('>I', len(payload)) + kind + payload
          + struct.pack('>I', zlib.crc32(kind + payload)))


@functools.lru_cache(maxsize=8)
def png_bomb(height: int, width: int, channels: int = 3) -> bytes:
  """A complete, valid PNG of height x width black pixels, a few hundred KB.

  A decompression bomb: 16000x16000 RGB is 746 KB on disk and 768 MB decoded.
  Built in well under a second: the deflate stream repeats one compressed
  block of zero rows (compressed with a full flush, so it does not depend on
  what came before) instead of compressing every row.
  """
  color_type = {1: 0, 3: 2}[channels]  # gray, RGB; 8 bits per sample
  ihdr = struct.pack('>IIBBBBB', width, height, 8, color_type, 0, 0, 0)
  row = 1 + width * channels  # filter byte 0 (None) + the samples, all zero
  rows_per_block = max(1, (1 << 20) // row)
  whole, rest = divmod(height, rows_per_block)
  deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: header written by hand
  block = deflate.compress(b'\0' * (row * rows_per_block)) + deflate.flush(zlib.Z_FULL_FLUSH)
  deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
  tail = deflate.compress(b'\0' * (row * rest)) + deflate.flush()
  # Adler-32 of n zero bytes: a stays 1, b adds a once per byte.
  adler = (((row * height) % 65521) << 16) | 1
  idat = b'\x78\xda' + block * whole + tail + struct.pack('>I', adler)
  return (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', ihdr) + _png_chunk(b'IDAT', idat)
          + _png_chunk(b'IEND', b''))


def jpeg_bomb(height: int, width: int) -> bytes:
  """A small JPEG whose start-of-frame declares height x width (at most 65535 a side).

  The scan data is a 16x16 image's, so a decoder that trusts the header
  allocates the declared size and then runs out of data.
  """
  data = bytearray(encode(np.zeros((16, 16, 3), np.uint8), 'jpg'))
  sof = data.index(b'\xff\xc0')  # baseline SOF0: marker, length, precision, height, width
  data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
  return bytes(data)


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
  the decode check): a truncated JPEG and a text file named .jpg. Over the
  default pixel limit (kept by the scan, skipped by the header check): a
  valid PNG that declares 5000x5000 pixels and a JPEG that declares
  20000x20000 (`oversized`: path -> declared size). Ignored by
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
  oversized = {'train/cat/bomb.png': (5000, 5000), 'train/dog/bomb.jpg': (20000, 20000)}
  with open(os.path.join(root, 'train/cat/bomb.png'), 'wb') as f:
    f.write(png_bomb(5000, 5000, channels=1))
  with open(os.path.join(root, 'train/dog/bomb.jpg'), 'wb') as f:
    f.write(jpeg_bomb(20000, 20000))
  return {
      'classes': ['cat', 'dog'],
      'good': 8 + 8 + 4,  # 16 generated + gray, rgba, odd, wide
      'bad': {'train/dog/truncated.jpg', 'train/cat/notes.jpg', 'train/cat/bitmap.jpg',
              *oversized},
      'oversized': oversized,
      'ignored': {'.git', 'LICENSE.txt', 'train/empty_class', 'train/cat/nested',
                  'train/cat/readme.txt', 'train/dog/escape.jpg'},
  }


def make_infer_folder(root: str, classes: Sequence[str] = CLASS_NAMES[:4],
                      seed: int = 7) -> dict:
  """New images to score, in no particular layout (no labels). Returns what to expect.

  Good: JPEGs and PNGs at the top and in nested folders, one of them without
  an extension. Bad: a truncated JPEG (its header intact), a text file and a
  PNG declaring 5000x5000 pixels. `.DS_Store` is hidden: passed over, not listed.
  """
  rng = np.random.default_rng(seed)
  good = {'a.jpg': 0, 'b.png': 1, 'trip/day1/c.jpg': 2, 'trip/day1/d.png': 3,
          'trip/e.jpeg': 0, 'trip/no_extension': 1}
  for path, label in good.items():
    os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
    with open(os.path.join(root, path), 'wb') as f:
      f.write(encode(synthetic_image(label % len(classes), rng), 'png' if path.endswith(
          ('.png', 'extension')) else 'jpg'))
  jpeg = encode(synthetic_image(1, rng, 64), 'jpg')
  bad = {'trip/truncated.jpg': jpeg[:len(jpeg) // 2], 'notes.txt': b'not an image',
         'trip/day1/bomb.png': png_bomb(5000, 5000, channels=1)}
  for path, data in bad.items():
    with open(os.path.join(root, path), 'wb') as f:
      f.write(data)
  with open(os.path.join(root, '.DS_Store'), 'wb') as f:
    f.write(b'\0\0\0\1Bud1')
  return {'good': set(good), 'bad': {
      'trip/truncated.jpg': '(?i)jpeg', 'notes.txt': 'not a JPEG or PNG file',
      'trip/day1/bomb.png': 'declares 5000x5000 pixels, over the limit'}}


# ---------------------------------------------------------------- serving load

# What each bad kind of request must fail with: a regex of its
# InvalidArgumentError's message, with the default pixel limit.
LOAD_ERRORS = {
    'empty': 'must hold encoded JPEG or PNG images',
    'text': 'must hold encoded JPEG or PNG images',
    'truncated jpeg': '(?i)invalid JPEG data',
    'truncated png': '(?i)invalid PNG data',
    'png bomb': (r'declares 16000x16000 pixels, over the limit 16777216 '
                 r'\(refused before decoding'),
    'jpeg bomb': (r'declares 20000x20000 pixels, over the limit 16777216 '
                  r'\(refused before decoding'),
}
Request = Tuple[str, Tuple[str, ...], List[bytes]]  # (signature, image names or bad kind, values)


def load_images(seed: int = 3) -> Tuple[Dict[str, bytes], Dict[str, bytes]]:
  """(good, bad) encoded images by name: several sizes, modes and formats; every bad kind."""
  rng = np.random.default_rng(seed)

  def pixels(*shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)

  good = {
      'jpeg 32x32': encode(pixels(32, 32, 3), 'jpg'),
      'jpeg 17x45': encode(pixels(17, 45, 3), 'jpg'),
      'jpeg 300x200': encode(pixels(300, 200, 3), 'jpg'),
      'jpeg 480x640': encode(pixels(480, 640, 3), 'jpg'),
      'png 32x32': encode(pixels(32, 32, 3), 'png'),
      'png 64x7': encode(pixels(64, 7, 3), 'png'),
      'png gray 40x25': encode(pixels(40, 25), 'png'),
      'png rgba 120x90': encode(pixels(120, 90, 4), 'png'),
  }
  jpeg, png = good['jpeg 300x200'], good['png rgba 120x90']
  bad = {
      'empty': b'',
      'text': b'{"instances": ["not an image"]}',
      'truncated jpeg': jpeg[:len(jpeg) // 2],
      'truncated png': png[:len(png) // 2],
      'png bomb': png_bomb(16000, 16000),
      'jpeg bomb': jpeg_bomb(20000, 20000),
  }
  return good, bad


def load_requests() -> Tuple[List[Request], List[Request]]:
  """(good requests, bad requests) for both signatures of the serving contract.

  Good: every image alone, batches of 3, all 8 together, and an empty batch
  (empty outputs; the oneDNN trap in components/serving.py). Bad: every bad
  kind alone and behind a good image in one batch (the whole request fails).
  """
  from components import features, serving  # pylint: disable=g-import-not-at-top
  good, bad = load_images()
  names = sorted(good)
  batches = ([[n] for n in names] + [names[i:i + 3] for i in range(0, len(names), 3)]
             + [names, []])
  good_requests, bad_requests = [], []
  for signature in (features.SERVING_SIGNATURE, features.EXAMPLE_SIGNATURE):
    def values(blobs, signature=signature):
      return list(blobs) if signature == features.SERVING_SIGNATURE else \
          [serving.image_example(b) for b in blobs]
    for batch in batches:
      good_requests.append((signature, tuple(batch), values([good[n] for n in batch])))
    for kind, blob in sorted(bad.items()):
      bad_requests.append((signature, (kind,), values([blob])))
      bad_requests.append((signature, (kind,), values([good['jpeg 32x32'], blob])))
  return good_requests, bad_requests


def load_schedule(requests: int, good: int, bad: int, good_share: float = 0.7,
                  seed: int = 0) -> List[Tuple[str, int]]:
  """`requests` draws of ('good', index) or ('bad', index), `good_share` of them good."""
  import random  # pylint: disable=g-import-not-at-top
  rng = random.Random(seed)
  return [('good', rng.randrange(good)) if rng.random() < good_share
          else ('bad', rng.randrange(bad)) for _ in range(requests)]


class RssWatch:
  """Samples this process's resident memory every few ms while in its `with` block.

  `growth_mb` is the peak over the resident size at entry: what the block
  cost at its worst, whatever the process held before (the lifetime peak,
  ru_maxrss, would hide a block that stays under an earlier test's peak).
  """

  def __init__(self, interval_s: float = 0.002):
    import psutil  # pylint: disable=g-import-not-at-top
    self._process = psutil.Process()
    self._interval_s = interval_s
    self._stop = threading.Event()
    self.start_mb = self.peak_mb = 0.0

  def _rss_mb(self) -> float:
    return self._process.memory_info().rss / 2**20

  def _sample(self):
    while not self._stop.wait(self._interval_s):
      self.peak_mb = max(self.peak_mb, self._rss_mb())

  def __enter__(self):
    self.start_mb = self.peak_mb = self._rss_mb()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak_mb = max(self.peak_mb, self._rss_mb())
    return False

  @property
  def growth_mb(self) -> float:
    return self.peak_mb - self.start_mb


class Tf1Model:
  """A SavedModel loaded the way TF Serving loads it: its graph in a TF1 session.

  `tf.compat.v1.saved_model.loader.load` imports the graph, runs the restore
  op and the init op (components/serving_check/check.py). Calls may come from
  several threads at once, as TF Serving's request threads share one session.
  """

  def __init__(self, export_dir: str):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.graph = tf.Graph()
    self.session = tf.compat.v1.Session(graph=self.graph)
    with self.graph.as_default():
      meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ['serve'], export_dir)
    self.signatures = meta_graph.signature_def

  def __call__(self, signature: str, values: Sequence[bytes]) -> Dict[str, np.ndarray]:
    signature_def = self.signatures[signature]
    (input_name,) = signature_def.inputs
    feed = {signature_def.inputs[input_name].name: np.array(list(values), dtype=object)}
    fetch = {name: tensor.name for name, tensor in signature_def.outputs.items()}
    return self.session.run(fetch, feed)

  def close(self):
    self.session.close()


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


def write_with_another_writer_midway(monkeypatch, write_json, path: str) -> dict:
  """`write_json`s a value; once its first bytes are on disk, another writer writes whole.

  What a parallel search's chief and workers do to last_search.json at the same
  time. Returns the first writer's value (it renames last, so it should win).
  """
  import json  # pylint: disable=g-import-not-at-top
  dump = json.dump
  calls = []

  class FlushedAndInterrupted:
    def __init__(self, f):
      self.f = f

    def write(self, text):
      self.f.write(text)
      self.f.flush()
      if calls == ['outer']:
        # longer than the rest of the first writer's text: a shared file keeps its tail
        write_json(path, {'by': 'tuner1', 'compute': {'tflop': 1.5, 'trials': list(range(20))}})

  def dump_interrupted(value, f, **kwargs):
    outer = not calls
    calls.append('outer' if outer else 'inner')
    dump(value, FlushedAndInterrupted(f) if outer else f, **kwargs)

  monkeypatch.setattr(json, 'dump', dump_interrupted)
  first = {'by': 'chief', 'compute': {'tflop': 0.0}}
  write_json(path, first)
  monkeypatch.setattr(json, 'dump', dump)
  assert calls == ['outer', 'inner']
  return first
