"""An exponential moving average (EMA) of the weights: validated, then exported.

With `TrainConfig.ema_momentum` m > 0 (`--ema-momentum`), the Trainer's
optimizer keeps beside every trainable weight w an average a, updated after
each step as a <- m*a + (1-m)*w: Keras 3's own `use_ema`, nothing of ours in
the step. 1/(1-m) steps is its horizon: 100 at m = 0.99. What Keras 3.12 does
with it (keras/src/...):

- the first step sets a to that step's weights (optimizers/base_optimizer.py,
  `_update_model_variables_moving_average`: momentum 0 while `iterations` is
  0), so the average starts where training starts, never from zeros;
- at the end of `fit` the model's weights are overwritten with the averages
  (backend/tensorflow/trainer.py calls `optimizer.finalize_variable_values`
  after the last epoch): the export, the TFLite copy and the warm-start
  weights (components/warm_start.py) are the averaged ones;
- `SwapEMAWeights` (callbacks/swap_ema_weights.py) puts the averages into the
  model for every validation pass (`on_test_begin`/`on_test_end`), so the
  Trainer's `val_accuracy` (history.json, report.html) is the averaged
  weights'. `accuracy` (training) is the raw weights'. With `swap_on_epoch`
  the averages also stay in the model from the end of an epoch to the start
  of the next, so EarlyStopping's `restore_best_weights` keeps the averaged
  weights of its best epoch, the ones it was judged on.

Callback order matters (`components/trainer.callbacks`): the swap comes after
BackupAndRestore, whose epoch checkpoint must hold the raw weights in the
model's slots and the averages in the optimizer's (Keras writes both to the
`.weights.h5`), so a resumed run continues both; and before EarlyStopping.
The checkpoint's directory is keyed on the whole TrainConfig, so a run with
another momentum never resumes from it.

**BatchNorm.** Its moving mean and variance are not trainable variables:
Keras does not average them, and they track the activations of the raw
weights of roughly the last 1/(1 - 0.9) = 10 steps (the model's BatchNorm
momentum). The exported network pairs averaged weights with statistics of
the raw ones. Under the one-cycle schedule (models/training.py) that gap
closes by itself: the learning rate falls linearly to 0, so over an average's
horizon at the end of training the raw weights hardly move. For the `cpu`
preset (351 steps an epoch, 30 epochs, 8,424 falling steps) the rate over
the last 100 steps is below 1.2% of its peak (m = 0.99); over the last 1,000
(m = 0.999) below 12%, where the mismatch (and also what the average can
add) grows. Re-estimating the statistics under the averaged weights, one
pass over training data as SWA does, would close it; it is not done here.

**Warm start.** A warm-started Trainer loads the blessed model's weights into
a fresh model and compiles a new optimizer: its first step sets the average
to the loaded weights after that step, never to zeros. The saved
`Format-Keras` weights file also holds the previous optimizer's state,
averages included; a model loaded before `compile` has no optimizer, so that
part is not read.

**Multi-worker** (components/scale_out/): every worker holds the same
mirrored weights and applies the same averaged gradients, so every worker's
averages are the same; the swap runs through the distribution strategy
(`extended.update`), on each worker's own copy, with no collective op.

**The Tuner never averages.** Its trials are short: for the `cpu` preset at
most 4 epochs of 78 steps on the tuning subset, and Hyperband scores most
trials after 1 or 2 of them, while the learning rate is still high. There
an average is mostly the past: after one 78-step epoch at m = 0.99 the
weights of the first step still make up 0.99**78 = 46% of it. Trials would
be ranked on that lag rather than on what their hyperparameters do for the
Trainer, so they are scored on the raw weights; the Trainer alone applies
its TrainConfig's momentum.
"""

from __future__ import annotations

from typing import Any, Dict, List

import keras


def optimizer_options(momentum: float) -> Dict[str, Any]:
  """Keyword arguments of a Keras 3 optimizer for an EMA at `momentum`; {} for 0 (off)."""
  if not momentum:
    return {}
  return {'use_ema': True, 'ema_momentum': float(momentum)}


def callbacks(momentum: float) -> List[keras.callbacks.Callback]:
  """The fit callbacks an EMA at `momentum` needs: validation on the averaged weights.

  Goes after BackupAndRestore and before EarlyStopping (see the module docstring).
  """
  if not momentum:
    return []
  return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]


def describe(momentum: float) -> str:
  """One phrase for the Trainer's log."""
  if not momentum:
    return 'no weight averaging'
  return (f'EMA of the weights at momentum {momentum:g} (horizon {1 / (1 - momentum):.0f} '
          'steps; validated and exported)')
