"""The shared vocabulary: feature keys, signature names and class-name files.

Every module that reads or writes examples, or serves the model, takes its names
from here; the serving contract's names are part of the public API.
"""

import json
import os
from typing import List, Sequence

# Raw tf.Example features written by ExampleGen.
IMAGE_KEY = 'image'  # encoded JPEG or PNG bytes, as read from the source
LABEL_KEY = 'label'  # int64 class id, an index into the class names
ID_KEY = 'image_id'  # stable id: path relative to the image tree, or the tfds id
# Per-image figures that StatisticsGen summarizes and the schema and drift
# checks guard (the encoded bytes alone tell TFDV nothing about the pixels).
HEIGHT_KEY = 'height'  # int64 pixel height of the decoded image
WIDTH_KEY = 'width'  # int64 pixel width
CHANNELS_KEY = 'channels'  # int64 channels in the file: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
MEAN_KEYS = ('mean_red', 'mean_green', 'mean_blue')  # float per-channel mean, 0..255 (RGB)
CONTRAST_KEY = 'contrast'  # float standard deviation of the luminance, 0..255
ENCODED_BYTES_KEY = 'encoded_bytes'  # int64 size of the encoded file
FORMAT_KEY = 'format'  # bytes: jpeg | png

# Transformed features (the output of preprocessing_fn).
TRANSFORMED_IMAGE_KEY = 'image_xf'  # float32 [size, size, 3], normalized per channel
TRANSFORMED_LABEL_KEY = 'label_xf'  # int64 []
# With --patch-whitening: the training split's patch-whitening filters, float32
# [2*2*3*12], the same in every example (components/whitening.py).
WHITENING_KEY = 'whitening_xf'

# Serving contract.
SERVING_SIGNATURE = 'serving_default'
EXAMPLE_SIGNATURE = 'serving_tf_example'
SERVING_INPUT = 'image_bytes'
EXAMPLE_INPUT = 'examples'
PROBABILITIES = 'probabilities'
CLASS_IDS = 'class_ids'
CLASS_NAMES = 'class_names'

# The image formats of the serving contract, recognized by their first bytes.
JPEG_MAGIC = b'\xff\xd8\xff'  # SOI marker + the first byte of the next marker
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def is_jpeg_or_png(data: bytes) -> bool:
  """True if `data` starts like a JPEG or PNG file (what training and serving accept)."""
  return data.startswith(JPEG_MAGIC) or data.startswith(PNG_MAGIC)


# Written by ExampleGen at the root of its Examples artifact, next to Split-*/.
CLASS_NAMES_FILE = 'class_names.json'
COUNTS_FILE = 'image_counts.json'
BAD_IMAGES_FILE = 'bad_images.txt'


def write_class_names(examples_uri: str, names: Sequence[str]) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(os.path.join(examples_uri, CLASS_NAMES_FILE), 'w') as f:
    json.dump(list(names), f)


def read_class_names(examples_uri: str) -> List[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = os.path.join(examples_uri, CLASS_NAMES_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(
        f'{path} is missing: the Examples artifact was not written by this '
        "project's ExampleGen, so class names are unknown")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def window_class_names(file_patterns: Sequence[str]) -> List[str]:
  """The class names shared by every Examples artifact behind `file_patterns`.

  A training window spans several ExampleGen runs; labels index the sorted
  class names, so all of them must agree. Raises ValueError naming the
  artifacts and classes otherwise.
  """
  uris = sorted({examples_uri_from_split_pattern(p) for p in file_patterns})
  names = {uri: read_class_names(uri) for uri in uris}
  first = names[uris[0]]
  for uri in uris[1:]:
    if names[uri] != first:
      added = sorted(set(names[uri]) - set(first))
      dropped = sorted(set(first) - set(names[uri]))
      raise ValueError(
          f'class names differ across the training window: {uri} has {names[uri]}, '
          f'{uris[0]} has {first} (added {added}, dropped {dropped}); every span must '
          'hold the same classes')
  return first


def examples_uri_from_split_pattern(pattern: str) -> str:
  """`<uri>/Split-train/*` (what TFX gives run_fn) -> `<uri>`."""
  split_dir = pattern
  while os.path.basename(split_dir) and not os.path.basename(split_dir).startswith('Split-'):
    split_dir = os.path.dirname(split_dir)
  if not os.path.basename(split_dir):
    raise ValueError(f'no Split-* directory in {pattern!r}')
  return os.path.dirname(split_dir)
