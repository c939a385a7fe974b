"""The input function that the Tuner and the Trainer share.

    raw tf.Examples -> parse -> [sample or shuffle the raw records]
      -> transform graph (decode, resize, normalize)
      -> [cache -> shuffle] -> batch -> [augment: training only] -> prefetch

A warm start may replay (`replay_dataset`): each epoch all the examples the
base model never saw, mixed with a fresh sample of those it did.

With `training_epochs` (TrainConfig.alternating_flip), the Trainer's input
holds all its epochs and mirrors each image in every other one: a random half
of the images in the first epoch, the other half in the next, and so on
(airbench's alternating flip), instead of a fresh coin toss per image per
epoch. Each image keeps its index in the input (before any shuffle) through
the pipeline, and a hash of that index picks its half.

The transform graph is applied here, batch by batch, never materialized on
disk. When the transformed split fits `cache_limit_gb` (CIFAR-10 at 32x32:
0.55 GB) it is cached in memory after the first epoch, so later epochs cost
no decoding at all; larger images re-run the transform every epoch instead.
Augmentation (random translation by reflect-padding + crop, horizontal flip)
exists only in this training branch: never in Transform, never at serving.
"""

from __future__ import annotations

from typing import List, Optional

import tensorflow as tf
from tfx_bsl.public import tfxio

from components import features

AUTOTUNE = tf.data.AUTOTUNE
TRANSFORM_BATCH = 256  # raw examples per transform call; independent of training batch
PAD_PIXELS = 4  # translation range of the crop augmentation, per side (32 px images)
# Covers CIFAR-10's 45k training examples: a full shuffle. Raw records before
# the cache; after it, decoded 32x32 images (0.6 GB), never larger ones.
SHUFFLE_BUFFER = 50_000


def flip_and_crop(images: tf.Tensor, pad: int = PAD_PIXELS,
                  flip: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Per-image horizontal flip and random crop after reflect-padding.

  Vectorized over the batch (one gather per axis), so it costs little next to
  a training step. `images`: float32 [batch, height, width, channels];
  `flip`: bool [batch], which images to mirror (default: each at random).
  """
  shape = tf.shape(images)
  batch, height, width = shape[0], shape[1], shape[2]
  if flip is None:
    flip = tf.random.uniform([batch]) < 0.5
  images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
  if pad <= 0:
    return images
  padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode='REFLECT')
  dy = tf.random.uniform([batch], 0, 2 * pad + 1, dtype=tf.int32)
  dx = tf.random.uniform([batch], 0, 2 * pad + 1, dtype=tf.int32)
  rows = dy[:, None] + tf.range(height)[None, :]  # [batch, height]
  cols = dx[:, None] + tf.range(width)[None, :]
  images = tf.gather(padded, rows, axis=1, batch_dims=1)
  return tf.gather(images, cols, axis=2, batch_dims=1)


def alternating_flip(index: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
  """bool [batch]: mirror these images in this epoch.

  Each image's first-epoch coin is a hash of its input index; every later epoch
  inverts the one before, so any two consecutive epochs show each image once
  as it is and once mirrored."""
  first = tf.strings.to_hash_bucket_fast(tf.strings.as_string(index), 2) == 1
  return tf.not_equal(first, tf.equal(epoch % 2, 1))


def _to_pair(transformed):
  return (transformed[features.TRANSFORMED_IMAGE_KEY],
          transformed[features.TRANSFORMED_LABEL_KEY])


def raw_dataset(file_patterns: List[str], data_accessor, schema) -> tf.data.Dataset:
  """Raw examples as dicts of batched tensors, in file order, one pass."""
  return data_accessor.tf_dataset_factory(
      file_patterns,
      tfxio.TensorFlowDatasetOptions(batch_size=TRANSFORM_BATCH, shuffle=False,
                                     num_epochs=1, label_key=None),
      schema)


def transformed_bytes(num_examples: int, image_size: int) -> int:
  return num_examples * image_size * image_size * 3 * 4


def make_dataset(raw: tf.data.Dataset, tft_layer, *, batch_size: int, training: bool,
                 take: Optional[int] = None, cache: bool = True,
                 seed: Optional[int] = None,
                 num_examples: Optional[int] = None,
                 training_epochs: Optional[int] = None) -> tf.data.Dataset:
  """(images, labels) batches from raw example batches.

  Shuffling happens on raw records (encoded bytes, ~1.5 KB each), never on
  decoded images, so it is cheap at any image size, and a subset is a random
  sample whatever order the files hold (ExampleGen's output may be grouped
  by class).

  Args:
    raw: batches of raw feature dicts (`raw_dataset`).
    tft_layer: `TFTransformOutput.transform_features_layer()`.
    batch_size: training or evaluation batch size.
    training: shuffle every epoch, augment, and drop the last partial batch.
    take: keep a fixed random sample of `take` examples (tuning subsets).
    cache: keep the transformed examples in memory after the first pass.
    seed: shuffle and augmentation seed.
    num_examples: how many examples `raw` holds (`count_examples`), if known.
      Keras then knows the number of batches from the first epoch on; without
      it, the first epoch ends in Keras' "Your input ran out of data;
      interrupting training" warning, although nothing is cut short. Leave it
      None where the input is sharded among workers: each sees fewer.
    training_epochs: training only: the dataset holds this many epochs, one
      after the other, with alternating flips (`alternating_flip`); `fit`
      then needs `steps_per_epoch`. None: one epoch, random flips.
  """
  if not (training and training_epochs):
    ds = _examples(raw, tft_layer, training=training, take=take, cache=cache, seed=seed,
                   num_examples=num_examples)
    return _batches(ds, batch_size, training)
  indexed = _examples(raw, tft_layer, training=True, take=take, cache=cache, seed=seed,
                      num_examples=num_examples, indexed=True)

  def epoch_batches(epoch):  # the same cached examples, reshuffled every epoch
    batches = indexed.batch(batch_size, drop_remainder=True)
    return batches.map(lambda i, x, y: (flip_and_crop(x, flip=alternating_flip(i, epoch)), y),
                       num_parallel_calls=AUTOTUNE)

  return tf.data.Dataset.range(training_epochs).flat_map(epoch_batches).prefetch(AUTOTUNE)


def replay_dataset(new_raw: tf.data.Dataset, seen_raw: tf.data.Dataset, tft_layer, *,
                   batch_size: int, num_new: int, num_seen: int, replay: float,
                   cache: bool = True, seed: Optional[int] = None) -> tf.data.Dataset:
  """Training batches for a warm start: every new example each epoch, plus a fresh random
  sample of `replay` x `num_seen` of the examples the base model already trained on,
  mixed at random. An epoch holds `replay_epoch_size(...)` examples.

  The seen examples' cache fills on the first epoch while they fit
  SHUFFLE_BUFFER (the shuffle reads them all); beyond it, each epoch stops
  reading early and the cache is dropped, so they are decoded again."""
  per_epoch = replay_epoch_size(num_new, num_seen, replay) - num_new
  new = _examples(new_raw, tft_layer, training=True, cache=cache, seed=seed,
                  num_examples=num_new)
  seen = _examples(seen_raw, tft_layer, training=True, cache=cache, seed=seed,
                   num_examples=num_seen).take(per_epoch)
  mixed = tf.data.Dataset.sample_from_datasets(
      [new, seen], weights=[float(num_new), float(per_epoch)], seed=seed,
      stop_on_empty_dataset=False)
  mixed = mixed.apply(tf.data.experimental.assert_cardinality(num_new + per_epoch))
  return _batches(mixed, batch_size, training=True)


def replay_epoch_size(num_new: int, num_seen: int, replay: float) -> int:
  """Examples in one warm epoch: all new ones plus `replay` of the seen ones (at least one)."""
  return num_new + max(1, round(replay * num_seen))


def _examples(raw: tf.data.Dataset, tft_layer, *, training: bool, take: Optional[int] = None,
              cache: bool, seed: Optional[int], num_examples: Optional[int],
              indexed: bool = False) -> tf.data.Dataset:
  """Transformed (image, label) pairs, one at a time; reshuffled every pass when training.

  `indexed`: (index, image, label), the index being the example's place in `raw`."""
  ds = raw.unbatch()
  if indexed:
    ds = ds.enumerate()
  if take is not None:  # the same sample every epoch
    ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False).take(take)
  if training and not cache:
    ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
  if indexed:
    transform = lambda index, batch: (index,) + _to_pair(tft_layer(batch))
  else:
    transform = lambda batch: _to_pair(tft_layer(batch))
  ds = ds.batch(TRANSFORM_BATCH).map(transform, num_parallel_calls=AUTOTUNE).unbatch()
  if num_examples is not None:  # a different count fails the first epoch, plainly
    count = num_examples if take is None else min(num_examples, take)
    ds = ds.apply(tf.data.experimental.assert_cardinality(count))
  if cache:
    ds = ds.cache()
    if training:
      ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
  return ds


def _batches(ds: tf.data.Dataset, batch_size: int, training: bool) -> tf.data.Dataset:
  """Batched, and augmented when training (the last partial batch dropped)."""
  ds = ds.batch(batch_size, drop_remainder=training)
  if training:
    ds = ds.map(lambda x, y: (flip_and_crop(x), y), num_parallel_calls=AUTOTUNE)
  return ds.prefetch(AUTOTUNE)


def shard_policy(num_files: int, workers: int) -> tf.data.experimental.AutoShardPolicy:
  """How a multi-worker cluster splits an input of `num_files` files among `workers`.

  tf.data's AUTO shards by file and fails outright when a worker would get no
  file (ExampleGen writes one file per split for small data). Then every
  worker reads all files and keeps its share of the elements (DATA): the same
  seeded order on every worker, so the shares do not overlap.
  """
  if workers > 1 and num_files < workers:
    return tf.data.experimental.AutoShardPolicy.DATA
  return tf.data.experimental.AutoShardPolicy.AUTO


def for_workers(ds: tf.data.Dataset, file_patterns: List[str], workers: int) -> tf.data.Dataset:
  """`ds` with the shard policy for `workers` (a no-op for one)."""
  files = sum(len(tf.io.gfile.glob(pattern)) for pattern in file_patterns)
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = shard_policy(files, workers)
  return ds.with_options(options)


def count_examples(file_patterns: List[str]) -> int:
  """Number of records in GZIP TFRecord files (one fast pass, no parsing)."""
  files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
  ds = tf.data.TFRecordDataset(files, compression_type='GZIP')
  return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())
