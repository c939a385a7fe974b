"""Test-time augmentation, measured on a trained model: what flips and shifts buy.

    .venv/bin/python benchmarks/tta.py --model-dir ROOT/Trainer/model/N/Format-Serving \\
        --examples ROOT/ImageExampleGen/examples/M --split eval

Scores the eval split through the exported `serving_default` signature (the
path TF Serving takes) on each image as stored, and on variants of it made in
pixel space and re-encoded losslessly as PNG:

- `flip`: the mirror image;
- `shift`: the image moved by one pixel in each of the four directions
  (edges reflected), as random crops after padding do in training.

A view set's accuracy is that of the mean of its views' probabilities. Nothing
is trained; the model's own signature does all the preprocessing, so the
figures say what putting the same views inside the serving graph would buy.
Prints one table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from typing import Dict, List

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

VIEW_SETS = {
    'none': ['id'],
    'flip': ['id', 'flip'],
    'shift': ['id', 'up', 'down', 'left', 'right'],
    'flip+shift': ['id', 'flip', 'up', 'down', 'left', 'right'],
}


def view(pixels: np.ndarray, name: str) -> np.ndarray:
  """One augmented view of an HxWxC image."""
  if name == 'id':
    return pixels
  if name == 'flip':
    return pixels[:, ::-1]
  padded = np.pad(pixels, ((1, 1), (1, 1), (0, 0)), mode='reflect')
  h, w = pixels.shape[:2]
  dy, dx = {'up': (2, 1), 'down': (0, 1), 'left': (1, 2), 'right': (1, 0)}[name]
  return padded[dy:dy + h, dx:dx + w]


def read_split(examples_uri: str, split: str, limit: int):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components import features  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(examples_uri, f'Split-{split}', '*')))
  if not files:
    raise SystemExit(f'no Split-{split} files under {examples_uri}')
  spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
          features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
  images, labels = [], []
  for record in tf.data.TFRecordDataset(files, compression_type='GZIP').take(limit or -1):
    parsed = tf.io.parse_single_example(record, spec)
    images.append(parsed[features.IMAGE_KEY].numpy())
    labels.append(int(parsed[features.LABEL_KEY]))
  return images, np.array(labels)


def score(signature, encoded: List[bytes], batch: int = 256) -> np.ndarray:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = []
  for i in range(0, len(encoded), batch):
    result = signature(image_bytes=tf.constant(encoded[i:i + batch]))
    out.append(result['probabilities'].numpy())
  return np.concatenate(out)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model-dir', required=True, help='a serving SavedModel')
  p.add_argument('--examples', required=True, help='an Examples artifact URI')
  p.add_argument('--split', default='eval')
  p.add_argument('--limit', type=int, default=0, help='first N images only (0: all)')
  args = p.parse_args(argv)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  images, labels = read_split(args.examples, args.split, args.limit)
  signature = tf.saved_model.load(args.model_dir).signatures['serving_default']
  pixels = [tf.io.decode_image(b, channels=3).numpy() for b in images]
  needed = sorted({v for views in VIEW_SETS.values() for v in views})
  probabilities: Dict[str, np.ndarray] = {}
  for name in needed:
    since = time.time()
    encoded = (images if name == 'id' else
               [tf.io.encode_png(view(x, name)).numpy() for x in pixels])
    probabilities[name] = score(signature, encoded)
    print(f'view {name}: {time.time() - since:.0f} s', file=sys.stderr)
  rows = {}
  for set_name, views in VIEW_SETS.items():
    mean = np.mean([probabilities[v] for v in views], axis=0)
    rows[set_name] = float(np.mean(mean.argmax(-1) == labels))
  print(f'{len(labels)} {args.split} images')
  print('| views | forward passes | accuracy |')
  print('|---|---|---|')
  for set_name, accuracy in rows.items():
    print(f'| {set_name} | {len(VIEW_SETS[set_name])} | {accuracy:.4f} |')
  print(json.dumps({'images': len(labels), 'accuracy': rows}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
