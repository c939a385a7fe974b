"""The TFLite model against the SavedModel: accuracy, size and batch-1 latency.

    .venv/bin/python benchmarks/tflite.py --pipeline-root ROOT --preset smoke

Takes the newest Trainer model, Transform graph and Examples under ROOT,
rebuilds the trained Keras model from the model's `Format-Keras/` weights and
its run's hyperparameters (the preset gives the variant and search space),
and converts it as the Trainer does (components/tflite_export.py) with each
quantization: float, dynamic, int8 (calibrated on the training split), and
with the test-time flip when the SavedModel serves with it (the export does
not record it: `serves_flipped` asks the model). Then, on the eval split:

- the SavedModel's accuracy through `serving_default` on the encoded bytes;
- each TFLite model's accuracy through the TFLite interpreter, one image at a
  time on uint8 pixels decoded as `tflite_export.pixels` does, its top-1
  agreement with the SavedModel and the largest difference in any class
  probability;
- the file size, and the interpreter's batch-1 latency (median and p90 of
  `invoke()`, `--threads` threads, after 10 warm-up calls); for comparison,
  the SavedModel's on one encoded image per call (TF's own threads; decode
  and transform included).

With `--untrained`, the model is the preset's network with the search
space's default hyperparameters and its initial weights: the size and
latency of that architecture, without a trained model of it at hand (the
accuracy columns then mean nothing).

Prints a Markdown table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

from tta import read_split  # noqa: E402  pylint: disable=g-import-not-at-top  (also tta's)


def newest(pattern: str) -> str:
  """The artifact directory with the highest execution id among `pattern`'s matches."""
  found = [p for p in glob.glob(pattern) if os.path.basename(p).isdigit()]
  if not found:
    raise SystemExit(f'nothing matches {pattern}')
  return max(found, key=lambda p: int(os.path.basename(p)))


def rebuild_model(model_uri: str, preset: str, num_classes: int, image_size: int,
                  untrained: bool = False, whitening=None, conv_widths=None):
  """The trained Keras model from `Format-Keras/` and the run's hyperparameters.json
  (`untrained`: the preset's defaults, freshly initialized). `whitening`: the
  run's patch-whitening filters (components/whitening.read_kernel), or None.
  `conv_widths`: the run's --conv-widths, or None for the preset's."""
  from components import trainer  # pylint: disable=g-import-not-at-top
  from components import warm_start  # pylint: disable=g-import-not-at-top
  from models import alexnet  # pylint: disable=g-import-not-at-top
  from tfx_pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from tuning import search_space  # pylint: disable=g-import-not-at-top
  cfg = config_lib.preset(preset)
  conv_widths = conv_widths or cfg.model.conv_widths
  if untrained:
    hp = search_space.resolve(cfg.tune, cfg.model.variant)
    return alexnet.build_model(hp, cfg.model.variant, image_size, num_classes,
                               whitening=whitening, conv_widths=conv_widths)
  run_dir = os.path.join(os.path.dirname(os.path.dirname(model_uri)), 'model_run',
                         os.path.basename(model_uri))
  with open(os.path.join(run_dir, trainer.HPARAMS_FILE)) as f:
    values = json.load(f)
  hp = search_space.resolve(cfg.tune, cfg.model.variant, fixed=values)
  model = alexnet.build_model(hp, cfg.model.variant, image_size, num_classes,
                             whitening=whitening, conv_widths=conv_widths)
  warm_start.load(model, warm_start.keras_dir(model_uri))
  return model


def serves_flipped(model, tft_output, pixels: List[np.ndarray], reference: np.ndarray,
                   count: int = 64) -> bool:
  """Whether the SavedModel averages each image with its mirror (test-time flip).

  The export does not record it, so this asks the model: the rebuilt network on
  the first `count` images, alone and averaged with their mirrors; the answer
  closer to the SavedModel's `reference` probabilities says which it serves.
  """
  from components import tflite_export  # pylint: disable=g-import-not-at-top
  size = pixels[0].shape[0]
  pixel_map = tflite_export.fit_pixel_map(tflite_export.transform_pixels_of(tft_output, size),
                                          size)
  x = pixel_map.apply(np.stack(pixels[:count])).astype(np.float32)
  alone = np.asarray(model(x, training=False), dtype=np.float64)
  averaged = (alone + np.asarray(model(x[:, :, ::-1], training=False), dtype=np.float64)) / 2
  want = reference[:count]
  return bool(np.abs(averaged - want).max() < np.abs(alone - want).max())


def latency_ms(interpreter, images: List[np.ndarray]) -> Dict[str, float]:
  for image in images[:10]:
    interpreter.predict_one(image)
  times = []
  for image in images:
    start = time.perf_counter()
    interpreter.predict_one(image)
    times.append((time.perf_counter() - start) * 1e3)
  return {'median': float(np.median(times)), 'p90': float(np.percentile(times, 90))}


def saved_model_latency_ms(signature, images: List[bytes]) -> Dict[str, float]:
  """serving_default on one encoded image at a time (decode and transform included)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  times = []
  for i, image in enumerate(images[:10] + images):
    start = time.perf_counter()
    signature(image_bytes=tf.constant([image]))
    if i >= 10:
      times.append((time.perf_counter() - start) * 1e3)
  return {'median': float(np.median(times)), 'p90': float(np.percentile(times, 90))}


def measure(model, tft_output, class_names, train_pattern, quantization, out_dir, pixels,
            labels, reference, args, test_time_flip: bool) -> Dict:
  """Converts with `quantization` (and the flip the SavedModel serves with), scores it."""
  from components import tflite_export  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  folder = tflite_export.export(
      model, tft_output, class_names, out_dir, quantization,
      lambda: tflite_export.split_images([train_pattern], args.representative_images),
      test_time_flip)
  seconds = time.perf_counter() - start
  path = os.path.join(folder, tflite_export.MODEL_FILE)
  interpreter = tflite_export.Interpreter(path, num_threads=args.threads)
  got = interpreter.predict(pixels)
  return {
      'accuracy': float(np.mean(got.argmax(-1) == labels)),
      'top1_agreement': float(np.mean(got.argmax(-1) == reference.argmax(-1))),
      'max_probability_difference': float(np.max(np.abs(got - reference))),
      'bytes': os.path.getsize(path),
      'latency_ms': latency_ms(interpreter, pixels),
      'convert_seconds': round(seconds, 1),
  }


def main(argv=None) -> int:
  from tfx_pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--pipeline-root', required=True)
  p.add_argument('--preset', default='cpu', help='the preset the run used (variant, space)')
  p.add_argument('--conv-widths', type=config_lib.parse_conv_widths,
                 help="the run's --conv-widths, if it gave one")
  p.add_argument('--quantizations', default='float,dynamic,int8')
  p.add_argument('--representative-images', type=int, default=200)
  p.add_argument('--threads', type=int, default=1, help='TFLite interpreter threads')
  p.add_argument('--untrained', action='store_true',
                 help="the preset's default network, untrained: size and latency only")
  p.add_argument('--limit', type=int, default=0, help='first N eval images only (0: all)')
  args = p.parse_args(argv)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from components import features  # pylint: disable=g-import-not-at-top
  from components import tflite_export  # pylint: disable=g-import-not-at-top
  from components import whitening  # pylint: disable=g-import-not-at-top

  root = args.pipeline_root
  model_uri = newest(os.path.join(root, 'Trainer', 'model', '*'))
  tft_output = tft.TFTransformOutput(newest(os.path.join(root, 'Transform', 'transform_graph',
                                                         '*')))
  examples = newest(os.path.join(root, 'ImageExampleGen', 'examples', '*'))
  class_names = features.read_class_names(examples)
  size = int(tft_output.transformed_feature_spec()[features.TRANSFORMED_IMAGE_KEY].shape[0])
  images, labels = read_split(examples, 'eval', args.limit)
  print(f'model {model_uri}\nexamples {examples}: {len(labels)} eval images', file=sys.stderr)

  signature = tf.saved_model.load(os.path.join(model_uri, 'Format-Serving')).signatures[
      features.SERVING_SIGNATURE]
  reference = np.concatenate([
      signature(image_bytes=tf.constant(images[i:i + 256]))[features.PROBABILITIES].numpy()
      for i in range(0, len(images), 256)])
  rows = {'SavedModel': {'accuracy': float(np.mean(reference.argmax(-1) == labels)),
                         'latency_ms': saved_model_latency_ms(signature, images)}}

  # A run with --patch-whitening has the filters in its transform graph.
  model = rebuild_model(model_uri, args.preset, len(class_names), size, args.untrained,
                        whitening=whitening.read_kernel(tft_output), conv_widths=args.conv_widths)
  pixels = [tflite_export.pixels(b, size).numpy() for b in images]
  # As the Trainer converts: with the test-time flip when the SavedModel has it.
  flip = (config_lib.preset(args.preset).train.test_time_flip if args.untrained
          else serves_flipped(model, tft_output, pixels, reference))
  print(f'test-time flip: {"on" if flip else "off"}', file=sys.stderr)
  train = os.path.join(examples, 'Split-train', '*')
  with tempfile.TemporaryDirectory(prefix='tflite-bench-') as out_dir:
    for quantization in args.quantizations.split(','):
      rows[quantization] = measure(model, tft_output, class_names, train, quantization,
                                   os.path.join(out_dir, quantization), pixels, labels,
                                   reference, args, flip)
  print(f'{len(labels)} eval images, {size}x{size}, interpreter threads {args.threads}, '
        f'test-time flip {"on" if flip else "off"}')
  print('| model | accuracy | top-1 agreement | max prob. difference | size | '
        'batch-1 latency median / p90 |')
  print('|---|---|---|---|---|---|')
  saved = rows['SavedModel']
  if not args.untrained:  # the run's SavedModel is another network then
    print(f"| SavedModel (serving_default, encoded bytes) | {saved['accuracy']:.4f} | | | | "
          f"{saved['latency_ms']['median']:.2f} / {saved['latency_ms']['p90']:.2f} ms |")
  for name, row in rows.items():
    if name == 'SavedModel':
      continue
    scores = ('(untrained) | | | ' if args.untrained else
              f"{row['accuracy']:.4f} | {row['top1_agreement']:.4f} | "
              f"{row['max_probability_difference']:.2g} | ")
    print(f"| TFLite {name} | {scores}{row['bytes'] / 1e6:.2f} MB | "
          f"{row['latency_ms']['median']:.2f} / {row['latency_ms']['p90']:.2f} ms |")
  print(json.dumps({'images': len(labels), 'image_size': size, 'threads': args.threads,
                    'test_time_flip': flip, 'rows': rows}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
