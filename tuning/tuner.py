"""tuner_fn: the Keras Tuner search that TFX's Tuner component runs.

The search runs on a subset of the train and eval splits
(`TuneConfig.train_examples` / `eval_examples`) with short trials
(`max_epochs`); the Trainer then trains the winner for the full schedule.
Search state lives in a stable directory under the pipeline root, keyed by a
digest of the model, the tuning config and the class names (not the data's
artifact URIs), so an interrupted search resumes where it stopped, a finished
one is reused when new data arrives (a day-two Tuner only reloads it), and a
changed search starts fresh. `--retune` starts a new generation.

`last_search.json` in the tuner directory says which search the last Tuner
run used and why; when the search ends it adds what that run trained
(`compute`: models/flops.py's record, 0 images when a finished search was
reused).

Trials train the raw weights: `TrainConfig.ema_momentum` is the Trainer's
alone (models/ema.py says why short trials must not average).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from typing import Any, Callable, Dict, List, NamedTuple, Tuple

import keras
import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx.v1.components import TunerFnResult

from components import checkpoint
from components import data as data_lib
from components import disk_space
from components import features
from components import whitening
from models import alexnet
from models import flops
from models import training
from tfx_pipeline import config as config_lib
from tuning.search_space import search_space

OBJECTIVE = keras_tuner.Objective(f'val_{training.ACCURACY}', direction='max')
TENSORBOARD_DIR = 'tensorboard'  # per-trial TensorBoard logs, inside the search's directory
LAST_SEARCH_FILE = 'last_search.json'  # in the tuner dir: which search the last run used, why


class Round(NamedTuple):
  bracket: int
  round: int
  trials: int
  epochs: int  # the epoch each trial of this round trains up to


def hyperband_rounds(max_epochs: int, factor: int) -> List[Round]:
  """keras-tuner's Hyperband schedule for one iteration (its arithmetic, restated)."""
  brackets, epochs = 0, float(max_epochs)
  while epochs >= 1:
    epochs /= factor
    brackets += 1
  end_size = math.ceil(1 + math.log(max_epochs, factor))
  rounds = []
  for bracket in reversed(range(brackets)):
    for rnd in range(bracket + 1):
      size = math.ceil(end_size / (bracket + 1) * factor ** (bracket - rnd))
      rounds.append(Round(bracket, rnd, size,
                          math.ceil(max_epochs / factor ** (bracket - rnd))))
  return rounds


def search_epochs(tune: config_lib.TuneConfig) -> int:
  """Epochs (over the tuning subset) that one search trains in total."""
  if tune.algorithm != 'hyperband':
    return tune.max_trials * tune.max_epochs
  total, previous = 0, {}
  for r in hyperband_rounds(tune.max_epochs, tune.hyperband_factor):
    start = previous.get(r.bracket, 0)  # later rounds resume the best trials
    total += r.trials * (r.epochs - start)
    previous[r.bracket] = r.epochs
  return total


def search_digest(module_config: Dict[str, Any], class_names: List[str]) -> str:
  """Identifies a search: same model, tuning config and classes -> the same search.

  The data's artifact URIs are left out on purpose: a new span (or any new
  data) reuses the finished search instead of searching again. `retune`
  is left out too; it moves to a new generation instead (`choose_project`).
  So are the model's switches that are off or unset: a release that adds one
  (off by default, like `patch_whitening`, or None, like `conv_widths`) keeps the key of the searches before it,
  and an upgrade does not search again.
  """
  tune = {k: v for k, v in module_config['tune'].items() if k != 'retune'}
  model = {k: v for k, v in module_config['model'].items() if v is not False and v is not None}
  key = json.dumps({'model': model, 'tune': tune, 'classes': class_names}, sort_keys=True)
  return hashlib.sha256(key.encode()).hexdigest()[:12]


def choose_project(tuner_dir: str, algorithm: str, digest: str,
                   retune: bool) -> Tuple[str, str]:
  """(keras-tuner project name, one line on why) for this search.

  Generation 0 is the first search for `digest`; `retune` starts the next
  generation and records it, so later runs without --retune reuse it.
  """
  pointer = os.path.join(tuner_dir, f'{algorithm}-{digest}.generation')
  generation = 0
  if tf.io.gfile.exists(pointer):
    with tf.io.gfile.GFile(pointer) as f:
      generation = int(f.read().strip() or 0)
  project = f'{algorithm}-{digest}-g{generation}'
  if retune:
    generation += 1
    project = f'{algorithm}-{digest}-g{generation}'
    tf.io.gfile.makedirs(tuner_dir)
    with tf.io.gfile.GFile(pointer, 'w') as f:
      f.write(str(generation))
    return project, 'new search (--retune)'
  if tf.io.gfile.exists(os.path.join(tuner_dir, project, 'oracle.json')):
    return project, ('reused the search of the same model, tuning config and classes (a '
                     'finished one does not search again, an interrupted one resumes; '
                     '--retune searches anew)')
  return project, 'new search: none yet for this model, tuning config and classes'


def build_tuner(hypermodel, tune: config_lib.TuneConfig, hp, directory: str,
                project_name: str) -> keras_tuner.Tuner:
  common = dict(hypermodel=hypermodel, objective=OBJECTIVE, hyperparameters=hp,
                allow_new_entries=False, tune_new_entries=True, seed=tune.seed,
                directory=directory, project_name=project_name, overwrite=False)
  if tune.algorithm == 'hyperband':
    tuner = keras_tuner.Hyperband(max_epochs=tune.max_epochs, factor=tune.hyperband_factor,
                                  hyperband_iterations=1, **common)
    # TFX's Tuner executor lists results with get_best_trials(oracle.max_trials),
    # which fails on Hyperband's None. Hyperband stops on its own schedule, so an
    # upper bound on its trial count changes nothing else.
    tuner.oracle.max_trials = 2 * sum(r.trials for r in hyperband_rounds(
        tune.max_epochs, tune.hyperband_factor))
    return tuner
  if tune.algorithm == 'random':
    return keras_tuner.RandomSearch(max_trials=tune.max_trials, **common)
  return keras_tuner.BayesianOptimization(max_trials=tune.max_trials, **common)


def after_search(tuner: keras_tuner.Tuner, action: Callable[[], None]) -> keras_tuner.Tuner:
  """Runs `action` when the search ends, after keras-tuner's own `on_search_end`.

  The TFX Tuner executor calls `search` itself: this is the one hook after it.
  """
  finish = tuner.on_search_end

  def on_search_end():
    finish()
    action()

  tuner.on_search_end = on_search_end
  return tuner


def write_json(path: str, value: Any) -> None:
  """Whole or not at all: a parallel search's chief and workers all write last_search.json."""
  disk_space.write_json(path, value, indent=1)


def drop_checkpoints_when_done(tuner: keras_tuner.Tuner) -> keras_tuner.Tuner:
  """Deletes the trials' weight checkpoints once the search has finished.

  Hyperband needs them only to continue a trial in its next round; after the
  search the Trainer needs the best hyperparameters alone (trial.json files stay,
  so a finished search still reloads as finished). They are most of a search's
  size: 26-50 MB per trial, 345 MB for the cpu preset's 10 trials. A parallel
  search (keras-tuner's chief/worker mode) keeps them: other workers may still
  be writing theirs, so its launcher drops them once every worker is done
  (components/scale_out/parallel_tuning.py).
  """
  if os.environ.get('KERASTUNER_ORACLE_IP'):
    return tuner
  return after_search(tuner, lambda: drop_checkpoints(tuner.project_dir))


def drop_checkpoints(project_dir: str) -> List[str]:
  """Deletes the trials' weight checkpoints in a search's directory; returns their paths."""
  paths = tf.io.gfile.glob(os.path.join(project_dir, 'trial_*', 'checkpoint*'))
  for path in paths:
    tf.io.gfile.remove(path)
  return paths


def _hypermodel(hp, model: config_lib.ModelConfig, num_classes: int, total_steps: int,
                jit_compile: bool, whitening_kernel=None):
  net = alexnet.build_model(hp, model.variant, model.image_size, num_classes,
                            whitening=whitening_kernel, conv_widths=model.conv_widths,
                            dirac=model.dirac_init)
  return training.compile_model(net, hp, total_steps, jit_compile)  # no EMA: models/ema.py


def tuner_fn(fn_args) -> TunerFnResult:
  settings = fn_args.custom_config
  model = config_lib.model_config_from_dict(settings['model'])
  train = config_lib.train_config_from_dict(settings['train'])
  tune = config_lib.tune_config_from_dict(settings['tune'])
  training.seed_everything(tune.seed, train.deterministic)
  class_names = features.window_class_names(fn_args.train_files + fn_args.eval_files)
  tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  schema = tft_output.raw_metadata.schema

  all_train = data_lib.count_examples(fn_args.train_files)
  n_train = min(tune.train_examples, all_train)
  steps_per_epoch = max(1, n_train // train.batch_size)
  layer = tft_output.transform_features_layer()
  train_ds = data_lib.make_dataset(
      data_lib.raw_dataset(fn_args.train_files, fn_args.data_accessor, schema), layer,
      batch_size=train.batch_size, training=True, take=tune.train_examples, seed=tune.seed,
      num_examples=all_train)
  eval_ds = data_lib.make_dataset(
      data_lib.raw_dataset(fn_args.eval_files, fn_args.data_accessor, schema), layer,
      batch_size=train.batch_size, training=False, take=tune.eval_examples,
      num_examples=data_lib.count_examples(fn_args.eval_files))

  project, why = choose_project(settings['tuner_dir'], tune.algorithm,
                                search_digest(settings, class_names), tune.retune)
  tf.io.gfile.makedirs(settings['tuner_dir'])
  last_search = os.path.join(settings['tuner_dir'], LAST_SEARCH_FILE)
  write_json(last_search, {'project': project, 'reason': why})
  hypermodel = functools.partial(
      _hypermodel, model=model, num_classes=len(class_names),
      total_steps=steps_per_epoch * tune.max_epochs, jit_compile=train.jit_compile,
      whitening_kernel=whitening.kernel_for(model, tft_output))
  tuner = drop_checkpoints_when_done(build_tuner(
      hypermodel, tune, search_space(tune, model.variant), settings['tuner_dir'], project))
  # Every trial's fit reports to `compute` (steps x batch: the input drops partial batches).
  compute = flops.ComputeLog(steps_per_epoch * train.batch_size)
  tuner = after_search(tuner, lambda: write_json(
      last_search, {'project': project, 'reason': why, 'compute': compute.record()}))
  logging.info('Tuner: %s; %s search in %s, %d subset epochs of %d examples', why,
               tune.algorithm, os.path.join(settings['tuner_dir'], project),
               search_epochs(tune), n_train)
  # keras-tuner gives each trial its own log dir under this one and adds the
  # HParams dashboard's records (tensorboard --logdir <pipeline root>).
  logs = keras.callbacks.TensorBoard(os.path.join(tuner.project_dir, TENSORBOARD_DIR))
  # keras-tuner saves each trial's best epoch through h5py, which crashes on a full disk.
  room = checkpoint.RoomCheck(tuner.project_dir, "a Tuner trial's checkpoint",
                              'Free space and run the same command again: the search resumes.')
  return TunerFnResult(
      tuner=tuner,
      fit_kwargs={'x': train_ds, 'validation_data': eval_ds, 'epochs': tune.max_epochs,
                  'verbose': 2, 'callbacks': [logs, compute, room]})
