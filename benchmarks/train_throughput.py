"""Training throughput: the project's input pipeline + model vs a tutorial-style Keras loop.

    .venv/bin/python benchmarks/train_throughput.py          # or: make bench

Both sides train the same network (the `cifar` AlexNet as the cpu preset
builds it, its patch-whitening first layer included, at the search space's
default hyperparameters) in one process on the same machine, on CIFAR-sized
data that the script makes itself (JPEG-encoded 32x32 images):

- project: TFRecords of tf.Example read with tfx_bsl (as the Trainer does) ->
  the TFT transform graph (decode, normalize) -> cache -> shuffle -> batch 128
  -> flip/crop augmentation -> prefetch (components/data.py);
- plain, as in the seed tutorials: `from_tensor_slices -> map(per-image
  standardization) -> shuffle -> batch(32)`, no prefetch, no caching, no
  augmentation; and the same plain loop at batch 128, to separate what the
  batch size buys from what the input pipeline buys.

Each side runs one warm-up epoch (the project's fills its cache), then the
three runs take turns, one timed epoch each, for 3 rounds; images/s is each
run's median (the host's speed drifts, so turns are fairer than one run after
the other). The input pipeline is also timed
alone (iterating batches without training): it must never be the bottleneck.
The last line is JSON with `ratio` = project / plain (tutorial style).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from components import data as data_lib  # noqa: E402
from components import features  # noqa: E402
from components import transform  # noqa: E402
from components import whitening  # noqa: E402
from models import alexnet, training  # noqa: E402
from tfx_pipeline import config  # noqa: E402
from tuning.search_space import search_space  # noqa: E402

NUM_IMAGES = 5_120  # 40 batches of 128
ROUNDS = 3  # timed epochs per run, taken in turns
TUTORIAL_BATCH = 32


def make_images(n: int, seed: int = 0) -> tuple:
  """Smooth random 32x32 RGB images (JPEG sizes like CIFAR's) and labels."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
  images = tf.image.resize(coarse, [32, 32]).numpy()
  images = np.clip(images + rng.normal(0, 8, images.shape), 0, 255).astype(np.uint8)
  return images, rng.integers(0, 10, n).astype(np.int64)


def write_examples(images, labels, path: str) -> str:
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for image, label in zip(images, labels):
      jpeg = tf.io.encode_jpeg(image, quality=95).numpy()
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
          features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
      })).SerializeToString())
  return path


class _Accessor:
  """The slice of TFX's DataAccessor that components/data.py uses."""

  @staticmethod
  def tf_dataset_factory(patterns, options, schema):
    from tfx_bsl.tfxio import tf_example_record  # pylint: disable=g-import-not-at-top
    return tf_example_record.TFExampleRecord(
        patterns, schema=schema, telemetry_descriptors=['benchmark']).TensorFlowDataset(options)


def project_dataset(workdir: str, images, labels, batch_size: int):
  """The Trainer's input pipeline on `images`, and the transform graph it runs."""
  jpegs = [tf.io.encode_jpeg(i, quality=95).numpy() for i in images[:512]]
  tft_output = __import__('tensorflow_transform').TFTransformOutput(
      transform.analyze_images(jpegs, labels[:512], 32, os.path.join(workdir, 'tft'),
                               patch_whitening=config.cpu().model.patch_whitening))
  path = write_examples(images, labels, os.path.join(workdir, 'train.gz'))
  raw = data_lib.raw_dataset([path], _Accessor, tft_output.raw_metadata.schema)
  dataset = data_lib.make_dataset(raw, tft_output.transform_features_layer(),
                                  batch_size=batch_size, training=True, seed=0)
  return dataset, tft_output


def plain_dataset(images, labels, batch_size: int):
  """The tutorials' pipeline: from_tensor_slices -> map -> shuffle -> batch."""
  def process(image, label):
    return tf.image.per_image_standardization(tf.cast(image, tf.float32)), label
  return (tf.data.Dataset.from_tensor_slices((images, labels))
          .map(process).shuffle(len(images)).batch(batch_size))


def build_model(steps: int, tft_output):
  """The cpu preset's net, its whitening filters (if on) from `tft_output`."""
  cpu = config.cpu()
  hp = search_space(cpu.tune, 'cifar')
  model = alexnet.build_model(hp, 'cifar', 32, 10,
                              whitening=whitening.kernel_for(cpu.model, tft_output),
                              conv_widths=cpu.model.conv_widths, dirac=cpu.model.dirac_init)
  return training.compile_model(model, hp, total_steps=steps)


def epoch_images_per_second(model, dataset) -> float:
  """Images/s of one epoch of `model.fit` on `dataset` (batches counted as they end)."""
  import keras  # pylint: disable=g-import-not-at-top
  seen = []

  class Count(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      seen.append(1)

  start = time.perf_counter()
  model.fit(dataset, epochs=1, verbose=0, callbacks=[Count()])
  seconds = time.perf_counter() - start
  return len(seen) * next(iter(dataset))[0].shape[0] / seconds


def interleaved_images_per_second(runs: dict, rounds: int) -> dict:
  """Median images/s per run over `rounds`, one epoch of each run per round.

  This machine's speed drifts by up to 30% from minute to minute (shared
  host), so the runs take turns instead of going one after the other, and
  each run's first epoch (tracing, cache filling) is a warm-up.
  """
  for model, dataset in runs.values():
    epoch_images_per_second(model, dataset)
  rates = {name: [] for name in runs}
  for _ in range(rounds):
    for name, (model, dataset) in runs.items():
      rates[name].append(epoch_images_per_second(model, dataset))
  return {name: float(np.median(r)) for name, r in rates.items()}


def input_images_per_second(dataset, epochs: int = 2) -> float:
  for _ in dataset:  # warm-up (fills the cache)
    pass
  start, n = time.perf_counter(), 0
  for _ in range(epochs):
    for x, _ in dataset:
      n += int(x.shape[0])
  return n / (time.perf_counter() - start)


def main() -> dict:
  images, labels = make_images(NUM_IMAGES)
  batch = config.cpu().train.batch_size
  with tempfile.TemporaryDirectory() as workdir:
    project, tft_output = project_dataset(workdir, images, labels, batch)
    results = {'input_pipeline_images_per_s': input_images_per_second(project)}
    steps = NUM_IMAGES // TUTORIAL_BATCH * (ROUNDS + 1)
    rates = interleaved_images_per_second({
        'project': (build_model(steps, tft_output), project),
        'plain': (build_model(steps, tft_output),
                  plain_dataset(images, labels, TUTORIAL_BATCH)),
        'plain_batch128': (build_model(steps, tft_output), plain_dataset(images, labels, batch)),
    }, ROUNDS)
  results['project_images_per_s'] = rates['project']
  results['plain_images_per_s'] = rates['plain']
  results['plain_batch128_images_per_s'] = rates['plain_batch128']
  results['ratio'] = results['project_images_per_s'] / results['plain_images_per_s']
  results['ratio_vs_plain_batch128'] = (results['project_images_per_s']
                                        / results['plain_batch128_images_per_s'])
  print(f'machine: {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}')
  print(f'{"input pipeline alone (project)":40s} {results["input_pipeline_images_per_s"]:8.0f} img/s')
  print(f'{"project training step (batch 128)":40s} {results["project_images_per_s"]:8.0f} img/s')
  print(f'{"plain tutorial loop (batch 32)":40s} {results["plain_images_per_s"]:8.0f} img/s')
  print(f'{"plain loop at batch 128":40s} {results["plain_batch128_images_per_s"]:8.0f} img/s')
  print(json.dumps({k: round(v, 2) for k, v in results.items()}))
  return results


if __name__ == '__main__':
  main()
