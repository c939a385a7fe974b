"""The whole AlexNet search space, in one function.

Every hyperparameter that `models/alexnet.py` and `models/training.py` read is
declared here with its default, and the tuner is built with
`allow_new_entries=False`, so the model code cannot grow a knob that the
search does not know about. The defaults are a complete, good configuration:
with tuning switched off (`--no-tune`) the Trainer uses them as they are.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

import keras_tuner

from tfx_pipeline.config import TuneConfig

TUNER_BOOKKEEPING = 'tuner/'


def search_space(tune: TuneConfig, variant: str) -> keras_tuner.HyperParameters:
  hp = keras_tuner.HyperParameters()
  # Architecture. Width and head size change the cost per image, so presets
  # bound them to what their time budget affords (TuneConfig).
  hp.Choice('width_multiplier', list(tune.width_multipliers),
            default=tune.width_multipliers[0])
  hp.Choice('dense_units', list(tune.dense_units), default=tune.dense_units[0])
  hp.Choice('dropout', [0.25, 0.0, 0.5], default=0.25)
  hp.Boolean('lrn', default=False) if variant == 'paper' else hp.Fixed('lrn', False)
  # Optimization: peak of the one-cycle learning rate (SGD+Nesterov, batch 128),
  # decoupled weight decay per unit of learning rate, label smoothing.
  hp.Float('learning_rate', 0.03, 0.2, sampling='log', default=0.08)
  hp.Float('weight_decay', 2e-3, 1.2e-2, sampling='log', default=5e-3)
  hp.Choice('label_smoothing', [0.2, 0.1, 0.0], default=0.2)
  return hp


def resolve(tune: TuneConfig, variant: str,
            best: Optional[Dict[str, Any]] = None,
            fixed: Optional[Dict[str, Any]] = None) -> keras_tuner.HyperParameters:
  """The hyperparameters the Trainer uses, in order of precedence.

  1. `best`: the Tuner's best_hyperparameters (a HyperParameters config);
  2. `fixed`: values from --hparams-file (a config or a plain {name: value});
  3. the search space's defaults.
  Values outside the search space are refused, so a typo cannot pass silently.
  """
  hp = search_space(tune, variant)
  if best:
    chosen = keras_tuner.HyperParameters.from_config(best).values
  elif fixed:
    chosen = fixed.get('values', fixed) if 'space' in fixed else fixed
  else:
    return hp
  # Hyperband's bookkeeping (tuner/epochs, tuner/trial_id, ...) is not a model knob.
  chosen = {k: v for k, v in chosen.items() if not k.startswith(TUNER_BOOKKEEPING)}
  unknown = sorted(set(chosen) - set(hp.values))
  if unknown:
    raise ValueError(f'hyperparameters not in the search space: {unknown}')
  for name, value in chosen.items():
    hp.values[name] = value
  return hp


def load_hparams_file(path: str) -> Dict[str, Any]:
  with open(path) as f:
    return json.load(f)
