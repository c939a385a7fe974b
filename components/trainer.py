"""run_fn: train AlexNet with the chosen hyperparameters, then export it for serving.

run_fn only orchestrates: hyperparameters (tuning/search_space.resolve), data
(components/data.py), model (models/), the fit, and export (components/serving.py;
the TFLite copy: components/tflite_export.py).
Training writes TensorBoard logs, a per-epoch history (history.json) and the
training compute it ran (compute.json, models/flops.py) to the model run
directory, and keeps a BackupAndRestore checkpoint under the pipeline root so
that a killed run resumes from its last finished epoch (components/checkpoint.py:
a full disk fails the run with a clear message and keeps the last checkpoint).
With a blessed model of the same architecture as `base_model`, training starts
from its weights for `warm_start_epochs` (components/warm_start.py).
With `ema_momentum` > 0, validation and the export use an exponential moving
average of the weights (models/ema.py). With `alternating_flip`, the training
dataset holds every epoch (components/data.py) and `fit` is told each epoch's
length.
Under a multi-worker `TF_CONFIG` every worker runs this same function; the
chief alone writes the outputs above (components/scale_out/multi_worker.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import keras
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from components import checkpoint
from components import data as data_lib
from components import disk_space
from components import features
from components import serving
from components import tflite_export
from components import warm_start
from components import whitening
from components.scale_out import keras_fit
from models import alexnet
from models import ema
from models import flops
from models import training
from tfx_pipeline import config as config_lib
from tuning import search_space

HISTORY_FILE = 'history.json'
JOURNAL_FILE = 'epoch_log.json'  # EpochLog's rows, beside the BackupAndRestore checkpoint
HPARAMS_FILE = 'hyperparameters.json'
COMPUTE_FILE = 'compute.json'  # the epochs this process trained, in FLOPs (models/flops.py)
WORKER_OUTPUT_PREFIX = 'worker-output-'  # a non-chief worker's throwaway outputs, in TMPDIR


class EpochLog(keras.callbacks.Callback):
  """One line per epoch with its wall time; collects the history for history.json.

  With a `journal` file (kept beside the BackupAndRestore checkpoint), the rows
  survive a killed run: a resumed training starts from the epochs already done,
  so history.json and the report show the whole curve.
  """

  def __init__(self, epochs: int, images_per_epoch: int, journal: Optional[str] = None):
    super().__init__()
    self.epochs = epochs
    self.images = images_per_epoch
    self.journal = journal
    self.rows: List[Dict[str, float]] = []
    if journal and tf.io.gfile.exists(journal):
      with tf.io.gfile.GFile(journal) as f:
        self.rows = json.load(f)

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()
    self._steps = 0

  def on_train_batch_end(self, batch, logs=None):
    self._steps += 1

  def on_epoch_end(self, epoch, logs=None):
    seconds = time.perf_counter() - self._start
    row = {'epoch': epoch + 1, 'seconds': round(seconds, 1), 'steps': self._steps,
           **{k: float(v) for k, v in (logs or {}).items()}}
    # An epoch re-run after a resume replaces its earlier row.
    self.rows = [r for r in self.rows if r['epoch'] < row['epoch']] + [row]
    if self.journal:  # whole or not at all: a resume must be able to read it
      disk_space.write_json(self.journal, self.rows)
    print(f'Trainer epoch {epoch + 1}/{self.epochs}: {seconds:.0f}s '
          f'({self.images / max(seconds, 1e-9):.0f} img/s), loss {row.get("loss", 0):.3f}, '
          f'accuracy {row.get(training.ACCURACY, 0):.4f}, '
          f'val_accuracy {row.get(f"val_{training.ACCURACY}", 0):.4f}', flush=True)


def strategy() -> tf.distribute.Strategy:
  """MultiWorkerMirrored with TF_CONFIG, Mirrored with several GPUs, else default."""
  if os.environ.get('TF_CONFIG'):
    return tf.distribute.MultiWorkerMirroredStrategy()
  if len(tf.config.list_logical_devices('GPU')) > 1:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


def is_chief() -> bool:
  """False only for a non-chief worker of a multi-worker cluster (TF_CONFIG)."""
  cluster = json.loads(os.environ.get('TF_CONFIG') or '{}')
  task = cluster.get('task') or {}
  if task.get('type') in (None, 'chief'):
    return True
  return (task.get('type') == 'worker' and task.get('index', 0) == 0
          and 'chief' not in cluster.get('cluster', {}))


def cluster_workers() -> int:
  """The processes that train together: the chief and workers of TF_CONFIG's cluster, else 1."""
  spec = json.loads(os.environ.get('TF_CONFIG') or '{}').get('cluster', {})
  return max(1, len(spec.get('chief', [])) + len(spec.get('worker', [])))


def output_dir(path: str) -> str:
  """`path` on the chief; a throwaway dir on other workers, which must still save
  (MultiWorkerMirroredStrategy's save is collective) but must not overwrite it."""
  return path if is_chief() else tempfile.mkdtemp(prefix=WORKER_OUTPUT_PREFIX)


def backup_dir(settings: Dict[str, Any], train_files: List[str], hp_values: Dict[str, Any]) -> str:
  """Stable per (config, data, hyperparameters): a rerun of the same training resumes."""
  key = json.dumps({'model': settings['model'], 'train': settings['train'],
                    'data': sorted(train_files), 'hp': hp_values}, sort_keys=True, default=str)
  digest = hashlib.sha256(key.encode()).hexdigest()[:12]
  return os.path.join(settings['backup_root'], digest)


def drop_worker_output(path: str) -> None:
  """Removes what `output_dir` gave a non-chief worker; the chief's outputs stay."""
  if not is_chief() and tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)


def callbacks(run_dir: str, train: config_lib.TrainConfig,
              backup: str) -> List[keras.callbacks.Callback]:
  result = [
      # Before EpochLog: an epoch's checkpoint is saved before its journal row.
      # Every worker restores from it; the chief alone saves it.
      checkpoint.BackupAndRestore(backup, save=is_chief()),
      keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, 'logs')),
      # After the checkpoint (it must save the raw weights in the model's slots),
      # before EarlyStopping (it keeps the averaged weights it judged): models/ema.py.
      *ema.callbacks(train.ema_momentum),
  ]
  if train.early_stopping_patience:
    result.append(keras.callbacks.EarlyStopping(
        monitor=f'val_{training.ACCURACY}', mode='max',
        patience=train.early_stopping_patience, restore_best_weights=True))
  return result


def replay_split(train_files: List[str], start: warm_start.Plan, train: config_lib.TrainConfig,
                 single_worker: bool) -> Tuple[List[str], List[str]]:
  """(new, seen) training files when this warm start replays (`warm_start_replay` < 1);
  ([], []) for whole epochs over the window: a cold start, replay off, several workers
  (each reads a share of one input), or a window with nothing new or nothing seen."""
  if not (start.source and train.warm_start_replay < 1 and single_worker):
    return [], []
  new, seen = warm_start.split_window(train_files, warm_start.seen_train_files(start.source))
  return (new, seen) if new and seen else ([], [])


def run_fn(fn_args) -> None:
  # First of all: MultiWorkerMirroredStrategy configures collective ops, which
  # TensorFlow refuses once any op has run ("must be configured at program startup").
  distribution = strategy()
  settings = fn_args.custom_config
  model_config = config_lib.model_config_from_dict(settings['model'])
  train = config_lib.train_config_from_dict(settings['train'])
  tune = config_lib.tune_config_from_dict(settings['tune'])
  training.seed_everything(train.seed, train.deterministic)
  if train.mixed_precision and tf.config.list_physical_devices('GPU'):
    keras.mixed_precision.set_global_policy('mixed_float16')

  hp = search_space.resolve(tune, model_config.variant, best=fn_args.hyperparameters,
                            fixed=settings.get('fixed_hparams'))
  logging.info('Trainer hyperparameters: %s', hp.values)
  class_names = features.window_class_names(fn_args.train_files + fn_args.eval_files)
  tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  schema = tft_output.raw_metadata.schema
  n_train = data_lib.count_examples(fn_args.train_files)
  n_eval = data_lib.count_examples(fn_args.eval_files)
  cache = data_lib.transformed_bytes(n_train + n_eval, model_config.image_size) \
      <= train.cache_limit_gb * 1e9
  layer = tft_output.transform_features_layer()
  single = cluster_workers() == 1  # with several workers, each reads a share
  eval_ds = data_lib.for_workers(data_lib.make_dataset(
      data_lib.raw_dataset(fn_args.eval_files, fn_args.data_accessor, schema), layer,
      batch_size=train.batch_size, training=False, cache=cache,
      num_examples=n_eval if single else None),
      fn_args.eval_files, cluster_workers())
  whitening_kernel = whitening.kernel_for(model_config, tft_output)

  with distribution.scope():
    model = alexnet.build_model(hp, model_config.variant, model_config.image_size,
                                len(class_names), whitening=whitening_kernel,
                                conv_widths=model_config.conv_widths,
                                dirac=model_config.dirac_init)
    start = warm_start.plan(fn_args.base_model, model, class_names, train.warm_start)
    if start.source:
      warm_start.load(model, start.source)
  epochs = train.warm_start_epochs if start.source else train.epochs
  new_files, seen_files = replay_split(fn_args.train_files, start, train, single)
  alternate = False  # alternating flips (TrainConfig.alternating_flip)
  if seen_files:
    n_new = data_lib.count_examples(new_files)
    n_seen = n_train - n_new  # the window is the new files and the seen ones
    images = data_lib.replay_epoch_size(n_new, n_seen, train.warm_start_replay)
    train_ds = data_lib.replay_dataset(
        data_lib.raw_dataset(new_files, fn_args.data_accessor, schema),
        data_lib.raw_dataset(seen_files, fn_args.data_accessor, schema), layer,
        batch_size=train.batch_size, num_new=n_new, num_seen=n_seen,
        replay=train.warm_start_replay, cache=cache, seed=train.seed)
    replay = (f'each warm epoch trains on the {n_new} new examples and a fresh '
              f'{train.warm_start_replay:.0%} sample of the {n_seen} the base model saw '
              f'({images} of {n_train})')
    print(f'Trainer: replay: {replay}', flush=True)  # INFO goes to the run log only
  else:
    images, replay = n_train, ''
    alternate = train.alternating_flip and single  # not sharded among workers
    train_ds = data_lib.make_dataset(
        data_lib.raw_dataset(fn_args.train_files, fn_args.data_accessor, schema), layer,
        batch_size=train.batch_size, training=True, cache=cache, seed=train.seed,
        num_examples=n_train if single else None,
        training_epochs=epochs if alternate else None)
  train_ds = data_lib.for_workers(train_ds, fn_args.train_files, cluster_workers())
  steps_per_epoch = max(1, images // train.batch_size)
  with distribution.scope():
    training.compile_model(model, hp, steps_per_epoch * epochs, train.jit_compile,
                           lr_scale=train.warm_start_lr_scale if start.source else 1.0,
                           ema_momentum=train.ema_momentum,
                           bias_lr_scale=train.bias_lr_scale)
    if keras_fit.needed(distribution, cluster_workers()):
      keras_fit.build_before_fit(model, train_ds.element_spec)
  logging.info('Trainer: %s; %s, %d parameters, %d train / %d eval examples, %d epochs, '
               'cache=%s, %s flips; %s', start.reason, model.name, model.count_params(), n_train,
               n_eval, epochs, cache, 'alternating' if alternate else 'random',
               ema.describe(train.ema_momentum))
  if train.ema_momentum:  # INFO goes to the run log; this goes beside the epoch lines
    print(f'Trainer: {ema.describe(train.ema_momentum)}', flush=True)
  if train.bias_lr_scale != 1.0:
    print(f'Trainer: BatchNorm biases at {train.bias_lr_scale:g}x the learning rate',
          flush=True)
  backup = backup_dir(settings, fn_args.train_files, {**hp.values, 'warm_start': start.source})
  journal = None
  if is_chief():
    tf.io.gfile.makedirs(backup)
    journal = os.path.join(backup, JOURNAL_FILE)
  images_per_epoch = steps_per_epoch * train.batch_size  # the input drops partial batches
  log = EpochLog(epochs, images_per_epoch, journal)
  compute = flops.ComputeLog(images_per_epoch)
  run_dir = output_dir(fn_args.model_run_dir)
  model.fit(train_ds, validation_data=eval_ds, epochs=epochs, verbose=0,
            steps_per_epoch=steps_per_epoch if alternate else None,  # one dataset, all epochs
            callbacks=callbacks(run_dir, train, backup) + [log, compute])

  tf.io.gfile.makedirs(run_dir)
  for name, value in ((HISTORY_FILE, log.rows), (HPARAMS_FILE, hp.values),
                      (warm_start.PLAN_FILE,
                       {**start.as_dict(), 'epochs': epochs, 'replay': replay,
                        'alternating_flip': alternate}),
                      (COMPUTE_FILE, compute.record())):
    with tf.io.gfile.GFile(os.path.join(run_dir, name), 'w') as f:
      json.dump(value, f, indent=1)
  export_dir = output_dir(fn_args.serving_model_dir)
  serving.export(model, tft_output, class_names, export_dir,
                 settings['max_image_pixels'], train.test_time_flip)
  model_uri = os.path.dirname(fn_args.serving_model_dir.rstrip('/'))
  if is_chief():  # the next run's warm start reads these
    warm_start.save(model, class_names, model_uri, fn_args.train_files)
    tflite = config_lib.tflite_config_from_dict(settings.get('tflite'))
    tflite_export.export(  # Format-TFLite/, which the Pusher places at tflite/<version>/
        model, tft_output, class_names, model_uri, tflite.quantization,
        lambda: tflite_export.split_images(fn_args.train_files, tflite.representative_images),
        train.test_time_flip)
  for path in (run_dir, export_dir):
    drop_worker_output(path)
  logging.info('Trainer exported the serving model to %s', export_dir)
