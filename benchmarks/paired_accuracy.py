"""How far apart two models really are on one eval split: paired accuracy.

    .venv/bin/python benchmarks/paired_accuracy.py \\
        --examples ROOT/ImageExampleGen/examples/M --split eval \\
        --model cold=COLD_ROOT/Trainer/model/N/Format-Serving \\
        --model warm=ROOT/Trainer/model/K/Format-Serving [--model ...]

Scores every model on the same images through `serving_default` (what the
Evaluator and clients see; the export's own test-time flip included), then
for each pair counts the images only one of them gets right. The difference
of two accuracies on the same n images is (b - c) / n, where b and c are
those counts, and its standard error is sqrt(b + c - (b - c)**2 / n) / n
(the paired, McNemar-style estimate). A gap inside about two standard errors
is not a measured difference: it is the eval split's sampling noise, which
is what the gate's `max_regression` and the day-two accuracy goal are
compared against. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from typing import Dict

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

import tta  # noqa: E402  pylint: disable=g-import-not-at-top  (read_split, score)


def paired(right_a: np.ndarray, right_b: np.ndarray) -> Dict[str, float]:
  """Accuracy difference a - b on the same images, with its paired standard error."""
  n = len(right_a)
  only_a = int(np.sum(right_a & ~right_b))
  only_b = int(np.sum(right_b & ~right_a))
  diff = (only_a - only_b) / n
  stderr = math.sqrt(max(0.0, only_a + only_b - (only_a - only_b) ** 2 / n)) / n
  return {'only_a': only_a, 'only_b': only_b, 'diff_points': round(100 * diff, 2),
          'stderr_points': round(100 * stderr, 2)}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--examples', required=True, help='an Examples artifact URI')
  p.add_argument('--split', default='eval')
  p.add_argument('--model', action='append', required=True,
                 help='NAME=a serving SavedModel; repeat for each model')
  args = p.parse_args(argv)
  models = dict(m.split('=', 1) for m in args.model)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  images, labels = tta.read_split(args.examples, args.split, 0)
  right = {}
  for name, path in models.items():
    signature = tf.saved_model.load(path).signatures['serving_default']
    right[name] = tta.score(signature, images).argmax(-1) == labels
  n = len(labels)
  print(f'{n} {args.split} images')
  print('| model | accuracy |')
  print('|---|---|')
  for name, ok in right.items():
    print(f'| {name} | {ok.mean():.4f} |')
  pairs = {}
  print('\n| a - b | only a right | only b right | difference (points) | paired std. error |')
  print('|---|---|---|---|---|')
  for a, b in itertools.combinations(right, 2):
    row = pairs[f'{a}-{b}'] = paired(right[a], right[b])
    print(f'| {a} - {b} | {row["only_a"]} | {row["only_b"]} | {row["diff_points"]:+.2f} '
          f'| {row["stderr_points"]:.2f} |')
  print(json.dumps({'images': n, 'accuracy': {k: round(float(v.mean()), 4)
                                              for k, v in right.items()}, 'pairs': pairs}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
