"""Patch whitening: filters from a TFT analyzer, frozen in the model's first layer.

The idea (airbench's first layer): the 2x2x3 patches of normalized training
images are strongly correlated, which slows SGD on the first convolution. A
frozen 2x2 convolution whose 12 filters are the eigenvectors of the patches'
covariance, each scaled by 1/sqrt(eigenvalue + EPS), turns every patch into
12 uncorrelated values of about unit variance.

Where each part lives, and why:
- `analyze` runs in Transform's preprocessing_fn: `tft.covariance` over every
  patch of the training split in Transform's full pass, the eigendecomposition
  in the transform graph. Transform emits the filters as a feature
  (`features.WHITENING_KEY`, the same value in every example).
- `read_kernel` gives the Trainer (and the Tuner) that value, once, by running
  the transform graph on one blank image.
- models/alexnet.py builds the frozen `whitening` layer with it. The filters
  must act after the Trainer's flip-and-crop augmentation (a mirrored whitened
  image is not the whitened mirrored image), so they sit in the model rather
  than in the transformed images; the exported model carries them, so serving
  whitens with the very filters training used. A warm start keeps the parent
  model's filters, which its later layers were trained against.

ModelConfig.patch_whitening turns it on: the cpu preset does (measured in
docs/training.md); `--patch-whitening` / `--no-patch-whitening` override it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from components import features

PATCH = 2  # pixels per side of a patch
CHANNELS = 3
DIM = PATCH * PATCH * CHANNELS  # values per patch, and filters
KERNEL_SHAPE = (PATCH, PATCH, CHANNELS, DIM)  # a Conv2D kernel
# Added to every eigenvalue: bounds the gain of the filters of the flattest
# directions (airbench's value, for images normalized to unit variance).
EPS = 5e-4


def patches(images: tf.Tensor) -> tf.Tensor:
  """float [batch, h, w, 3] -> every 2x2 patch, [batch * (h-1) * (w-1), 12].

  A patch's 12 values are ordered row, column, channel: the order of a Conv2D
  kernel's first three axes.
  """
  found = tf.image.extract_patches(images, sizes=[1, PATCH, PATCH, 1], strides=[1, 1, 1, 1],
                                   rates=[1, 1, 1, 1], padding='VALID')
  return tf.reshape(found, [-1, DIM])


def filters(covariance: tf.Tensor, eps: float = EPS) -> tf.Tensor:
  """The [12, 12] covariance of patches -> whitening filters, a [2, 2, 3, 12] kernel.

  Filter i is eigenvector i over sqrt(eigenvalue i + eps): a patch's responses
  are uncorrelated, each with variance eigenvalue / (eigenvalue + eps).
  """
  eigenvalues, eigenvectors = tf.linalg.eigh(tf.cast(covariance, tf.float64))
  scaled = eigenvectors / tf.sqrt(eigenvalues + eps)[tf.newaxis, :]
  return tf.reshape(tf.cast(scaled, tf.float32), KERNEL_SHAPE)


def analyze(normalized_images: tf.Tensor) -> tf.Tensor:
  """The training split's whitening filters, flat [2*2*3*12] (a TFT analyzer: a full pass)."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top  (Transform only)
  covariance = tft.covariance(patches(normalized_images), dtype=tf.float32)
  return tf.reshape(filters(covariance), [-1])


def per_example(kernel: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
  """The flat kernel repeated for each image: [batch, 144], as Transform outputs it."""
  return tf.zeros([tf.shape(images)[0], 1]) + kernel[tf.newaxis, :]


def read_kernel(tft_output) -> Optional[np.ndarray]:
  """The filters a transform graph computed, [2, 2, 3, 12]; None if it has none."""
  if features.WHITENING_KEY not in tft_output.transformed_feature_spec():
    return None
  blank = tf.io.encode_png(tf.zeros([PATCH, PATCH, CHANNELS], tf.uint8))
  outputs = tft_output.transform_features_layer()(
      {features.IMAGE_KEY: tf.reshape(blank, [1, 1])})
  return outputs[features.WHITENING_KEY][0].numpy().reshape(KERNEL_SHAPE)


def kernel_for(model_config, tft_output) -> Optional[np.ndarray]:
  """What build_model's `whitening` takes for this model config and transform graph."""
  if not model_config.patch_whitening:
    return None
  kernel = read_kernel(tft_output)
  if kernel is None:
    raise ValueError('patch whitening is on, but the transform graph has no whitening '
                     'filters: it was made without --patch-whitening. Run Transform again '
                     '(the same command re-runs it when the flag changes).')
  return kernel
