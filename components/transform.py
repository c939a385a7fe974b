"""preprocessing_fn: the one place where images become model inputs.

decode (JPEG/PNG, any size, gray/RGBA -> RGB) -> resize to `image_size` ->
normalize with the training split's per-channel mean and std, computed by TFT
analyzers in a full pass. With `patch_whitening` in the custom config, a third
analyzer computes the patch-whitening filters that the model's first, frozen
layer applies (components/whitening.py). The resulting graph runs in the
Trainer's input pipeline and inside the exported SavedModel, so training and
serving share it exactly. Nothing here is materialized to disk (Transform runs with
materialize=False): 45k x 227x227x3 float32 would be ~31 GB.
"""

import functools
import os
from typing import Any, Dict, Sequence

import tensorflow as tf
import tensorflow_transform as tft

from components import features
from components import whitening


def decode_image(encoded: tf.Tensor, size: int) -> tf.Tensor:
  """One encoded image -> float32 [size, size, 3] in 0..255.

  Undecodable bytes raise InvalidArgumentError naming the problem; they never
  become a silent zero image.
  """
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.ensure_shape(image, [None, None, 3])
  image = tf.cast(image, tf.float32)
  # Bilinear with antialiasing. At the target size it would return the pixels
  # unchanged (tested), so it is skipped there: ~20 us per CIFAR image, 0.7 ms
  # per batch of 32 served (benchmarks/serving_latency.py).
  already_sized = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
  image = tf.cond(already_sized, lambda: image,
                  lambda: tf.image.resize(image, [size, size], antialias=True))
  return tf.reshape(image, [size, size, 3])


def decode_images(encoded: tf.Tensor, size: int) -> tf.Tensor:
  """A batch of encoded images ([batch] or [batch, 1]) -> float32 [batch, size, size, 3].

  A batch of one (the usual serving request) skips tf.map_fn's while loop and
  decodes directly: the same ops on the same bytes, so the same pixels, about
  0.15 ms sooner per request on 2 cores (benchmarks/serving_latency.py).
  """
  encoded = tf.reshape(encoded, [-1])
  return tf.cond(
      tf.equal(tf.size(encoded), 1),
      lambda: decode_image(encoded[0], size)[tf.newaxis],
      lambda: tf.map_fn(lambda e: decode_image(e, size), encoded,
                        fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32)))


def channel_moments(images: tf.Tensor):
  """Full-pass per-channel mean and std of the training split (TFT analyzers)."""
  per_image_mean = tf.reduce_mean(images, axis=[1, 2])  # [batch, 3]
  per_image_sq = tf.reduce_mean(tf.square(images), axis=[1, 2])
  mean = tft.mean(per_image_mean, reduce_instance_dims=False)  # [3]
  mean_sq = tft.mean(per_image_sq, reduce_instance_dims=False)
  std = tf.sqrt(tf.maximum(mean_sq - tf.square(mean), 1e-6))
  return mean, std


def preprocessing_fn(inputs: Dict[str, tf.Tensor],
                     custom_config: Dict[str, Any]) -> Dict[str, tf.Tensor]:
  size = int(custom_config['image_size'])
  images = decode_images(inputs[features.IMAGE_KEY], size)
  mean, std = channel_moments(images)
  normalized = (images - mean) / std
  outputs = {
      features.TRANSFORMED_IMAGE_KEY: normalized,
      features.TRANSFORMED_LABEL_KEY: tf.reshape(inputs[features.LABEL_KEY], [-1]),
  }
  if custom_config.get('patch_whitening'):
    outputs[features.WHITENING_KEY] = whitening.per_example(
        whitening.analyze(normalized), images)
  return outputs


def analyze_images(encoded_images: Sequence[bytes], labels: Sequence[int], image_size: int,
                   output_dir: str, patch_whitening: bool = False) -> str:
  """Builds a transform graph from in-memory images with Beam, outside any pipeline.

  The same preprocessing_fn and the same on-disk layout as TFX's Transform
  (transform_fn/, transformed_metadata/, metadata/), for tests, benchmarks and
  notebooks. Returns `output_dir`, ready for `tft.TFTransformOutput`.
  """
  import tensorflow_transform.beam as tft_beam  # pylint: disable=g-import-not-at-top
  from tensorflow_transform.tf_metadata import dataset_metadata  # pylint: disable=g-import-not-at-top
  from tensorflow_transform.tf_metadata import metadata_io  # pylint: disable=g-import-not-at-top
  from tensorflow_transform.tf_metadata import schema_utils  # pylint: disable=g-import-not-at-top

  spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
          features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
  rows = [{features.IMAGE_KEY: [b], features.LABEL_KEY: [int(l)]}
          for b, l in zip(encoded_images, labels)]
  fn = functools.partial(preprocessing_fn, custom_config={'image_size': image_size,
                                                         'patch_whitening': patch_whitening})
  with tft_beam.Context(temp_dir=os.path.join(output_dir, 'tmp'), force_tf_compat_v1=False):
    transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(fn)
    _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
  metadata_io.write_metadata(
      metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
  return output_dir
