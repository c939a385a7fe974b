"""Training compute: a net's forward FLOPs per image, counted from its layers.

The project's budget is in training FLOPs (tfx_pipeline/config.py,
`compute_budget_tflop`): 3 x the forward FLOPs per image x the images that
each Tuner trial and the Trainer train on (a backward pass costs about twice
the forward one). Validation passes are not part of it.

How the forward pass is counted (`forward_flops`), per image:

- a multiply-add is 2 FLOPs;
- Conv1D/2D/3D: 2 x (kernel elements: kh x kw x cin x cout) x output positions
  (H_out x W_out for Conv2D), so stride and padding enter through the output;
- Dense: 2 x in x out, times the positions it is applied at (1 on a flat input);
- not counted: bias adds, BatchNorm, activations, pooling, dropout, reshapes,
  LRN and softmax: a few operations per activation, together about 0.2% of
  the `cifar` net's count (some 130k FLOPs, counted by hand). A layer with
  weights that is not listed here raises a ValueError instead of being left
  out silently.

Each layer counts once, for its first call (the AlexNets call every layer
once). `forward_flops` reads only layer types, kernel shapes and output
shapes, so it takes the Keras 3 models that the Tuner and the Trainer build
and tf_keras models alike.

    python -m models.flops --preset cpu   # forward MFLOP per image of a preset's nets

prints, for the `cpu` preset's `cifar` net at 32x32: 53.68 MFLOP with the
512-unit head, 59.46 with the 1024-unit one (`--preset smoke`: 3.53 / 3.69).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import keras

TRAINING_FACTOR = 3  # forward + backward (about twice the forward) per training image
KERNEL_LAYERS = ('Conv1D', 'Conv2D', 'Conv3D', 'Dense')
CHEAP_LAYERS_WITH_WEIGHTS = ('BatchNormalization',)  # per activation, not counted


def _leaf_layers(model) -> Iterator[Any]:
  """The layers of `model`, with nested models opened up."""
  for layer in model.layers:
    if hasattr(layer, 'layers'):
      yield from _leaf_layers(layer)
    else:
      yield layer


def _dims(shape) -> List[int]:
  return [int(d) for d in shape]


def layer_flops(layer) -> int:
  """Forward FLOPs per image of one layer (0 for the layers not counted)."""
  kind = type(layer).__name__
  if kind in KERNEL_LAYERS:
    out = _dims(layer.output.shape[1:])  # without the batch axis
    channels_first = getattr(layer, 'data_format', 'channels_last') == 'channels_first'
    positions = math.prod(out[1:] if channels_first else out[:-1])
    return 2 * math.prod(_dims(layer.kernel.shape)) * positions
  if layer.weights and kind not in CHEAP_LAYERS_WITH_WEIGHTS:
    raise ValueError(f'no FLOP count for layer {layer.name!r} of type {kind}; '
                     'add it to models/flops.py')
  return 0


def forward_flops(model) -> int:
  """Forward FLOPs for one image through `model` (Keras 3 or tf_keras), as above."""
  return sum(layer_flops(layer) for layer in _leaf_layers(model))


def training_flops(forward: int, images: int) -> int:
  """Training FLOPs for `images` images through a net of `forward` FLOPs per image."""
  return TRAINING_FACTOR * forward * images


def record(fits: Sequence[Tuple[int, int]]) -> Dict[str, Any]:
  """The JSON that the Tuner and the Trainer write: each fit's net and images, totals.

  `fits`: (forward FLOPs per image, images trained on) per model.fit, one for
  the Trainer, one per trial execution for the Tuner (trials may differ in
  head size, so in forward FLOPs).
  """
  return {
      'fits': [{'forward_flops_per_image': f, 'images': n} for f, n in fits],
      'images': sum(n for _, n in fits),
      'training_tflop': sum(training_flops(f, n) for f, n in fits) / 1e12,
  }


class ComputeLog(keras.callbacks.Callback):
  """Counts the images each fit trains on, with its model's forward FLOPs.

  An epoch counts when it ends, so `images_per_epoch` must be what one epoch
  trains on (steps x batch size; the training input drops its last partial
  batch). keras-tuner deep-copies callbacks for every trial: the copies share
  one `fits` list, so the original sees every trial. Only fits that ran in
  this process count: a search or training resumed after a kill does not
  include what the killed process ran, a reused finished search adds nothing.
  """

  def __init__(self, images_per_epoch: int, fits: Optional[List[List[int]]] = None):
    super().__init__()
    self.images_per_epoch = images_per_epoch
    self.fits = [] if fits is None else fits  # [forward FLOPs per image, images]

  def __deepcopy__(self, memo):
    return ComputeLog(self.images_per_epoch, self.fits)

  def on_train_begin(self, logs=None):
    self.fits.append([forward_flops(self.model), 0])

  def on_epoch_end(self, epoch, logs=None):
    self.fits[-1][1] += self.images_per_epoch

  def record(self) -> Dict[str, Any]:
    return record([tuple(fit) for fit in self.fits])


def preset_nets(preset: str, num_classes: int, conv_widths: Optional[Tuple[int, ...]] = None
                ) -> Iterator[Tuple[Dict[str, Any], Any]]:
  """(architecture values, model) for every width and head size a preset can train.

  `conv_widths` replaces the preset's own (as `--conv-widths` does for a run).
  """
  # pylint: disable=g-import-not-at-top  # the CLI's needs only
  import numpy as np
  from components import whitening
  from models import alexnet
  from tfx_pipeline import config as config_lib
  from tuning import search_space
  config = config_lib.preset(preset)
  if conv_widths:
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, conv_widths=tuple(conv_widths)))
  hp = search_space.search_space(config.tune, config.model.variant)
  for width, units in itertools.product(config.tune.width_multipliers, config.tune.dense_units):
    hp.values.update(width_multiplier=width, dense_units=units)
    kernel = np.zeros(whitening.KERNEL_SHAPE, 'float32') if config.model.patch_whitening else None
    model = alexnet.build_model(hp, config.model.variant, config.model.image_size, num_classes,
                                whitening=kernel, conv_widths=config.model.conv_widths)
    yield {'variant': config.model.variant, 'image_size': config.model.image_size,
           **({'conv_widths': config.model.conv_widths} if config.model.conv_widths else {}),
           'width_multiplier': width, 'dense_units': units}, model


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--preset', default='cpu', help='smoke, cpu or full')
  parser.add_argument('--num-classes', type=int, default=10)
  from tfx_pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  parser.add_argument('--conv-widths', type=config_lib.parse_conv_widths,
                      help='the five convolutions\' channels, e.g. 64,128,256,256,256')
  args = parser.parse_args(argv)
  for values, model in preset_nets(args.preset, args.num_classes, args.conv_widths):
    forward = forward_flops(model)
    words = ', '.join(f'{k} {v}' for k, v in values.items())
    print(f'{args.preset}: {words}: {forward / 1e6:.2f} MFLOP forward per image '
          f'({forward:,} FLOPs), {model.count_params():,} parameters')


if __name__ == '__main__':
  main()
