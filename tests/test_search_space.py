"""The search space, precedence of hyperparameter sources, and Hyperband arithmetic."""

import json

import keras
import keras_tuner
import numpy as np
import pytest

from tfx_pipeline import config
from tuning import search_space as space_lib
from tuning import tuner as tuner_lib


def test_defaults_cover_everything_the_model_reads():
  hp = space_lib.search_space(config.cpu().tune, 'cifar')
  assert set(hp.values) == {'width_multiplier', 'dense_units', 'dropout', 'lrn',
                            'learning_rate', 'weight_decay', 'label_smoothing'}
  assert hp.get('width_multiplier') == config.cpu().tune.width_multipliers[0]


def test_resolve_precedence_best_then_file_then_defaults():
  tune = config.cpu().tune
  best = space_lib.search_space(tune, 'cifar')
  best.values['learning_rate'] = 0.123
  assert space_lib.resolve(tune, 'cifar', best=best.get_config(),
                           fixed={'learning_rate': 0.5}).get('learning_rate') == 0.123
  assert space_lib.resolve(tune, 'cifar', fixed={'learning_rate': 0.5}).get(
      'learning_rate') == 0.5
  assert space_lib.resolve(tune, 'cifar').get('learning_rate') == 0.08


def test_resolve_drops_hyperband_bookkeeping():
  tune = config.cpu().tune
  best = space_lib.search_space(tune, 'cifar')
  best.Fixed('tuner/epochs', 4)
  best.Fixed('tuner/trial_id', '0003')
  hp = space_lib.resolve(tune, 'cifar', best=best.get_config())
  assert not any(name.startswith('tuner/') for name in hp.values)
  assert hp.get('learning_rate') == 0.08


def test_resolve_refuses_names_outside_the_space():
  with pytest.raises(ValueError, match='not in the search space'):
    space_lib.resolve(config.cpu().tune, 'cifar', fixed={'learnig_rate': 0.1})


def test_model_code_cannot_add_a_knob_to_the_search(tmp_path):
  def sneaky(hp):
    hp.Int('secret_units', 1, 4)
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
  with pytest.raises(RuntimeError, match='allow_new_entries.*secret_units'):
    tuner_lib.build_tuner(sneaky, config.smoke().tune,
                          space_lib.search_space(config.smoke().tune, 'cifar'),
                          str(tmp_path), 'p')


@pytest.mark.parametrize('max_epochs, factor', [(4, 3), (2, 2)])
def test_hyperband_arithmetic_matches_a_real_search(tmp_path, max_epochs, factor):
  epochs_run = []

  class Count(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
      epochs_run.append(epoch)

  def build(hp):
    hp.Float('lr', 1e-4, 1e-1, sampling='log')  # continuous: no duplicate trials
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(hp.get('lr')), 'mse')
    return model

  tuner = keras_tuner.Hyperband(build, objective='loss', max_epochs=max_epochs, factor=factor,
                                hyperband_iterations=1, directory=str(tmp_path), seed=0)
  tuner.search(np.zeros((4, 2)), np.zeros(4), callbacks=[Count()], verbose=0)
  tune = config.TuneConfig(max_epochs=max_epochs, hyperband_factor=factor)
  assert len(epochs_run) == tuner_lib.search_epochs(tune)


def test_cpu_preset_search_budget():
  rounds = tuner_lib.hyperband_rounds(4, 3)
  assert [(r.trials, r.epochs) for r in rounds] == [(5, 2), (2, 4), (3, 4)]
  assert tuner_lib.search_epochs(config.cpu().tune) == 5 * 2 + 2 * 2 + 3 * 4


def test_search_digest_changes_with_the_search_not_with_other_settings():
  settings = json.loads(json.dumps(config.cpu().module_config()))
  base = tuner_lib.search_digest(settings, ['/a/Split-train/*'])
  assert base == tuner_lib.search_digest(settings, ['/a/Split-train/*'])
  assert base != tuner_lib.search_digest(settings, ['/b/Split-train/*'])
  settings['tune']['max_epochs'] += 1
  assert base != tuner_lib.search_digest(settings, ['/a/Split-train/*'])
