"""AlexNet in two variants, built from hyperparameters (Keras 3).

`build_model(hp, variant, image_size, num_classes, whitening=None,
conv_widths=None, dirac=False)` is pure: no data, no I/O.
It returns an uncompiled `keras.Model` that maps normalized float32 images
[batch, size, size, 3] to class probabilities [batch, num_classes]. Both
variants keep AlexNet's shape -- five convolutions, three max-pools, two wide
fully connected layers with dropout, softmax -- and add BatchNorm after every
convolution.

- `paper`: Krizhevsky et al. (2012) at 227x227: 96 11x11/4, 256 5x5, 384, 384,
  256 3x3, 3x3/2 max-pools after conv 1, 2 and 5, two Dense 4096, dropout 0.5,
  optional local response normalization (`lrn`). 58M parameters at width 1.
- `cifar`: the same five-convolution stack sized for 32x32 inputs: 3x3
  kernels, widths 32-64-128-256-256 (x `width_multiplier`), 2x2 max-pools
  after conv 1, 2 and 3, so conv 4 and 5 run at 4x4. Pooling before
  BatchNorm+ReLU does the same work at a quarter of the pixels: +25% images/s
  on a 2-core CPU with no accuracy cost. The seed tutorial's reduced AlexNet
  (24-64-128-64-64, two Dense 4096, no BatchNorm) reached ~35% in 3 epochs;
  this one is the variant the `cpu` preset trains (README.md has its figures).

With `whitening` (a [2, 2, 3, 12] kernel from components/whitening.py), a
frozen 2x2 convolution whitens every patch before conv 1 ('same' padding, so
every later shape is unchanged). It is normalization, not a sixth learned
convolution: its weights never train.

With `dirac`, every stride-1 'same' convolution starts as an identity on its
inputs: of its `out` filters, the first `min(in, out)` pass input channel i
to output channel i unchanged (a 1 at the kernel's centre, 0 elsewhere); the
rest keep Keras' random initialization (airbench's dirac initialization).
All of them train as usual.

Compute stays in the global Keras dtype policy (mixed_float16 on GPUs); the
softmax output is always float32.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
from keras import layers

CIFAR_WIDTHS = (32, 64, 128, 256, 256)
CIFAR_POOL_AFTER = (0, 1, 2)  # conv indices followed by 2x2 max-pooling
PAPER_WIDTHS = (96, 256, 384, 384, 256)
PAPER_KERNELS = (11, 5, 3, 3, 3)
PAPER_POOL_AFTER = (0, 1, 4)
# BatchNorm moving averages: 0.9 (PyTorch's 0.1) instead of Keras' 0.99, so the
# inference statistics are current after the few hundred steps of a tuning trial.
BN_MOMENTUM = 0.9
WHITENING_LAYER = 'whitening'


def scaled(width: int, multiplier: float) -> int:
  """Channel count times the width multiplier, rounded to a multiple of 8 (min 8)."""
  return max(8, int(round(width * multiplier / 8.0)) * 8)


def _conv_bn_relu(x, filters: int, kernel: int, name: str, strides: int = 1,
                  padding: str = 'same', pool: int = 0, pool_stride: int = 2):
  x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                    name=f'{name}_conv')(x)
  if pool:
    x = layers.MaxPooling2D(pool, strides=pool_stride, name=f'{name}_pool')(x)
  x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f'{name}_bn')(x)
  return layers.ReLU(name=f'{name}_relu')(x)


def _lrn(x, name: str):
  """Krizhevsky's local response normalization (k=2, n=5, alpha=1e-4, beta=0.75)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return layers.Lambda(
      lambda t: tf.cast(tf.nn.local_response_normalization(
          tf.cast(t, 'float32'), depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75), t.dtype),
      name=name)(x)


def _head(x, units: int, dropout: float, num_classes: int):
  x = layers.Flatten(name='flatten')(x)
  for i in (1, 2):
    x = layers.Dense(units, use_bias=False, name=f'fc{i}')(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f'fc{i}_bn')(x)
    x = layers.ReLU(name=f'fc{i}_relu')(x)
    if dropout:
      x = layers.Dropout(dropout, name=f'fc{i}_dropout')(x)
  x = layers.Dense(num_classes, name='logits')(x)
  return layers.Activation('softmax', dtype='float32', name='probabilities')(x)


def _cifar_features(x, width: float, widths):
  for i, base in enumerate(widths):
    x = _conv_bn_relu(x, scaled(base, width), 3, f'conv{i + 1}',
                      pool=2 if i in CIFAR_POOL_AFTER else 0)
  return x


def _paper_features(x, width: float, lrn: bool, widths):
  for i, (base, kernel) in enumerate(zip(widths, PAPER_KERNELS)):
    x = _conv_bn_relu(x, scaled(base, width), kernel, f'conv{i + 1}',
                      strides=4 if i == 0 else 1, padding='valid' if i == 0 else 'same',
                      pool=3 if i in PAPER_POOL_AFTER else 0)
    if lrn and i in (0, 1):
      x = _lrn(x, f'conv{i + 1}_lrn')
  return x


def _whitening(x, kernel):
  """The frozen patch-whitening convolution, its kernel set to `kernel`."""
  layer = layers.Conv2D(kernel.shape[-1], kernel.shape[:2], padding='same', use_bias=False,
                        trainable=False, name=WHITENING_LAYER)
  x = layer(x)
  layer.set_weights([kernel])
  return x


def dirac_kernel(kernel: np.ndarray) -> np.ndarray:
  """`kernel` [h, w, in, out] with its first min(in, out) filters set to identities."""
  height, width, channels_in, channels_out = kernel.shape
  n = min(channels_in, channels_out)
  kernel = kernel.copy()
  kernel[..., :n] = 0.0
  kernel[height // 2, width // 2, np.arange(n), np.arange(n)] = 1.0
  return kernel


def _dirac_init(model: keras.Model) -> None:
  """Identity-initializes every trainable stride-1 'same' convolution of `model`."""
  for layer in model.layers:
    if (isinstance(layer, layers.Conv2D) and layer.trainable
        and tuple(layer.strides) == (1, 1) and layer.padding == 'same'
        and all(k % 2 for k in layer.kernel_size)):
      layer.set_weights([dirac_kernel(layer.get_weights()[0])])


def build_model(hp, variant: str, image_size: int, num_classes: int,
                whitening: Optional[np.ndarray] = None,
                conv_widths: Optional[Sequence[int]] = None,
                dirac: bool = False) -> keras.Model:
  """AlexNet for `hp` (keras_tuner.HyperParameters from tuning/search_space.py).

  `whitening`: patch-whitening filters for a frozen first layer, or None.
  `conv_widths`: the five convolutions' channels before the width multiplier
  (ModelConfig.conv_widths); None: the variant's own (CIFAR_WIDTHS, PAPER_WIDTHS).
  `dirac`: identity-initialize the stride-1 convolutions (ModelConfig.dirac_init).
  """
  inputs = keras.Input((image_size, image_size, 3), name='image')
  width = hp.get('width_multiplier')
  x = inputs if whitening is None else _whitening(inputs, whitening)
  if variant == 'cifar':
    x = _cifar_features(x, width, conv_widths or CIFAR_WIDTHS)
  elif variant == 'paper':
    x = _paper_features(x, width, hp.get('lrn'), conv_widths or PAPER_WIDTHS)
  else:
    raise ValueError(f'unknown AlexNet variant {variant!r}; use cifar or paper')
  outputs = _head(x, hp.get('dense_units'), hp.get('dropout'), num_classes)
  model = keras.Model(inputs, outputs, name=f'alexnet_{variant}')
  if dirac:
    _dirac_init(model)
  return model
