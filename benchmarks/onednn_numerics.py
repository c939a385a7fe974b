"""Do TensorFlow's oneDNN kernels compute what the default kernels compute?

    .venv/bin/python benchmarks/onednn_numerics.py      # about a minute

One training step's arithmetic, under TF_ENABLE_ONEDNN_OPTS=0 and =1 (each in
a process of its own: TensorFlow reads the variable at import): the `cpu`
preset's network with the same initial weights, on the same batch of 128
random images, in training mode (loss, probabilities, every gradient) and in
inference mode (probabilities). Prints the largest difference of each,
relative to the largest value, and a JSON line. Differences of about 1e-6
are float32 rounding in another order of operations; a wrong kernel shows as
a difference of order 1. It says nothing about speed
(benchmarks/cpu_settings.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 128


def one_step(weights: str, out: str) -> None:
  """In this process: loss, outputs and gradients of one batch, saved to `out` (.npz)."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, REPO)
  from models import alexnet  # pylint: disable=g-import-not-at-top
  from tfx_pipeline import config  # pylint: disable=g-import-not-at-top
  from tuning.search_space import search_space  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = alexnet.build_model(search_space(config.cpu().tune, 'cifar'), 'cifar', 32, 10,
                              conv_widths=config.cpu().model.conv_widths)
  if os.path.exists(weights):
    model.load_weights(weights)
  else:
    model.save_weights(weights)  # the first process fixes the weights for the second
  rng = np.random.default_rng(0)
  images = rng.normal(size=(BATCH, 32, 32, 3)).astype('float32')
  labels = rng.integers(0, 10, BATCH)
  with tf.GradientTape() as tape:
    train_probs = model(images, training=True)
    loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, train_probs))
  grads = tape.gradient(loss, model.trainable_variables)
  np.savez(out, loss=loss.numpy(), train_probs=train_probs.numpy(),
           infer_probs=model(images, training=False).numpy(),
           **{f'grad {v.path}': g.numpy() for v, g in zip(model.trainable_variables, grads)})


def relative_differences(a, b) -> dict:
  return {k: float(np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), 1e-30)) for k in a.files}


def main() -> None:
  with tempfile.TemporaryDirectory() as work:
    weights = os.path.join(work, 'init.weights.h5')
    outs = {}
    for setting in ('0', '1'):
      outs[setting] = os.path.join(work, f'onednn{setting}.npz')
      env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=setting, TF_CPP_MIN_LOG_LEVEL='2')
      subprocess.run([sys.executable, __file__, '--one-step', weights, outs[setting]],
                     env=env, check=True, cwd=REPO)
    diffs = relative_differences(np.load(outs['0']), np.load(outs['1']))
  for name, diff in diffs.items():
    print(f'{name:40s} {diff:.2e}')
  grads = [d for k, d in diffs.items() if k.startswith('grad ')]
  print(json.dumps({'loss': diffs['loss'], 'train_probs': diffs['train_probs'],
                    'infer_probs': diffs['infer_probs'], 'max_grad': max(grads)}))


if __name__ == '__main__':
  if len(sys.argv) == 4 and sys.argv[1] == '--one-step':
    one_step(sys.argv[2], sys.argv[3])
  else:
    main()
