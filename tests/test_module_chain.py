"""tuner_fn -> best hyperparameters -> run_fn -> export, run in-process on real artifacts.

The artifacts are made by the project's own code (ImageExampleGen's executor,
components.transform.analyze_images), so this proves the Keras 3 chain from
keras-tuner through training to the served SavedModel without a pipeline run,
and checks that searches are reproducible and resumable.
"""

import dataclasses
import glob
import json
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx_bsl.tfxio import tf_example_record

import fixtures
from components import data as data_lib
from components import features, tflite_export, trainer, transform, warm_start, whitening
from components.serving_check import check as serving_check
from models import alexnet, flops
from tfx_pipeline import config as config_lib
from tfx_pipeline import pipeline as pipeline_lib
from tuning import search_space
from tuning import tuner as tuner_lib

from test_example_gen import read_split, run_executor


def _factory(patterns, options, schema):
  return tf_example_record.TFExampleRecord(
      patterns, schema=schema, telemetry_descriptors=['test']).TensorFlowDataset(options)


@pytest.fixture(scope='module')
def artifacts(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('chain')
  tree = fixtures.make_image_tree(str(tmp / 'tree'), per_class=16)
  examples = run_executor(tmp, config_lib.DataConfig(image_dir=tree, eval_percent=25))
  train = read_split(examples, 'train')
  blobs = [e.features.feature[features.IMAGE_KEY].bytes_list.value[0] for e in train]
  labels = [e.features.feature[features.LABEL_KEY].int64_list.value[0] for e in train]
  graph = transform.analyze_images(blobs, labels, 32, str(tmp / 'transform'))
  return examples.uri, graph


def make_fn_args(tmp_path, artifacts, tune_changes=None, hyperparameters=None):
  uri, graph = artifacts
  cfg = config_lib.smoke()
  cfg = dataclasses.replace(
      cfg, pipeline_root=str(tmp_path / 'root'),
      tune=dataclasses.replace(cfg.tune, **(tune_changes or {})))
  return FnArgs(
      working_dir=str(tmp_path / 'work'),
      train_files=[os.path.join(uri, 'Split-train', '*')],
      eval_files=[os.path.join(uri, 'Split-eval', '*')],
      transform_graph_path=graph,
      data_accessor=DataAccessor(tf_dataset_factory=_factory, record_batch_factory=None,
                                 data_view_decode_fn=None),
      serving_model_dir=str(tmp_path / 'serving'),
      model_run_dir=str(tmp_path / 'model_run'),
      hyperparameters=hyperparameters,
      custom_config=json.loads(json.dumps(pipeline_lib.module_config(cfg, 'test'))))


class CountTrials(keras.callbacks.Callback):
  """Counts trials (fits) and can interrupt the search like a killed process.

  keras-tuner deep-copies callbacks for every trial, so the count lives in a
  list that all copies share.
  """

  def __init__(self, interrupt_at=None, counter=None):
    super().__init__()
    self.counter = [0] if counter is None else counter
    self.interrupt_at = interrupt_at

  def __deepcopy__(self, memo):
    return CountTrials(self.interrupt_at, self.counter)

  @property
  def fits(self):
    return self.counter[0]

  def on_train_begin(self, logs=None):
    self.counter[0] += 1
    if self.counter[0] == self.interrupt_at:
      raise KeyboardInterrupt('simulated kill')


def search(fn_args, callback=None):
  result = tuner_lib.tuner_fn(fn_args)
  kwargs = dict(result.fit_kwargs, verbose=0)
  if callback:
    kwargs['callbacks'] = list(kwargs.get('callbacks', [])) + [callback]
  result.tuner.search(**kwargs)
  return result.tuner


def images_per_epoch(fn_args, cap=None):
  """Full batches of the train split (or of its first `cap` examples) per epoch."""
  batch = fn_args.custom_config['train']['batch_size']
  n = data_lib.count_examples(fn_args.train_files)
  return min(n, cap or n) // batch * batch


def searched_compute(fn_args):
  """What the last search recorded that it trained (models/flops.py's record)."""
  path = os.path.join(fn_args.custom_config['tuner_dir'], tuner_lib.LAST_SEARCH_FILE)
  return json.load(open(path))['compute']


def test_tuner_to_trainer_to_export_chain(tmp_path, artifacts):
  fn_args = make_fn_args(tmp_path, artifacts)
  best = search(fn_args).get_best_hyperparameters()[0]
  fn_args.hyperparameters = best.get_config()
  trainer.run_fn(fn_args)

  # Compute: what each Hyperband trial and the Trainer's two epochs trained on.
  tune = config_lib.tune_config_from_dict(fn_args.custom_config['tune'])
  nets = {values['dense_units']: flops.forward_flops(model)
          for values, model in flops.preset_nets('smoke', num_classes=10)}
  searched = searched_compute(fn_args)
  assert searched['images'] == tuner_lib.search_epochs(tune) * images_per_epoch(
      fn_args, tune.train_examples)
  assert {fit['forward_flops_per_image'] for fit in searched['fits']} <= set(nets.values())
  trained = json.load(open(os.path.join(fn_args.model_run_dir, trainer.COMPUTE_FILE)))
  assert trained == flops.record([(nets[best.get('dense_units')], 2 * images_per_epoch(fn_args))])

  used = json.load(open(os.path.join(fn_args.model_run_dir, trainer.HPARAMS_FILE)))
  assert used == {k: v for k, v in best.values.items() if not k.startswith('tuner/')}
  history = json.load(open(os.path.join(fn_args.model_run_dir, trainer.HISTORY_FILE)))
  assert [row['epoch'] for row in history] == [1, 2]
  assert all('val_accuracy' in row for row in history)

  result = serving_check.check(fn_args.serving_model_dir)  # TF Serving's loader path
  assert result.ok, result.failure
  # The TFLite copy beside Format-Serving (the default quantization: dynamic).
  tflite = os.path.join(os.path.dirname(fn_args.serving_model_dir), tflite_export.TFLITE_DIR)
  with open(os.path.join(tflite, tflite_export.RECORD_FILE)) as f:
    assert json.load(f)['quantization'] == 'dynamic'
  with open(os.path.join(tflite, tflite_export.LABELS_FILE)) as f:
    assert len(f.read().splitlines()) == 10
  served = tf.saved_model.load(fn_args.serving_model_dir)
  tree = os.path.join(os.path.dirname(artifacts[0]), 'tree')
  blob = open(sorted(glob.glob(f'{tree}/train/ship/*.jpg'))[0], 'rb').read()
  out = served.signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant([blob]))
  assert out[features.PROBABILITIES].shape == (1, 10)
  np.testing.assert_allclose(out[features.PROBABILITIES].numpy().sum(), 1, atol=1e-5)



def test_patch_whitening_is_trained_frozen_exported_and_kept_apart_on_warm_start(
    tmp_path, artifacts):
  uri, _ = artifacts
  train = read_split(types.SimpleNamespace(uri=uri), 'train')
  blobs = [e.features.feature[features.IMAGE_KEY].bytes_list.value[0] for e in train]
  labels = [e.features.feature[features.LABEL_KEY].int64_list.value[0] for e in train]
  graph = transform.analyze_images(blobs, labels, 32, str(tmp_path / 'transform'),
                                   patch_whitening=True)
  fn_args = make_fn_args(tmp_path, (uri, graph))
  fn_args.custom_config['model']['patch_whitening'] = True
  trainer.run_fn(fn_args)
  assert serving_check.check(fn_args.serving_model_dir).ok  # TF Serving's loader path

  # The trained model holds Transform's filters, untouched by training.
  model_uri = os.path.dirname(fn_args.serving_model_dir)
  hp = search_space.resolve(config_lib.smoke().tune, 'cifar')
  kernel = whitening.read_kernel(tft.TFTransformOutput(graph))
  trained = alexnet.build_model(hp, 'cifar', 32, 10, whitening=np.zeros_like(kernel))
  trained.load_weights(os.path.join(warm_start.keras_dir(model_uri), warm_start.WEIGHTS_FILE))
  np.testing.assert_array_equal(
      trained.get_layer(alexnet.WHITENING_LAYER).get_weights()[0], kernel)
  # A model without the layer does not warm-start from it, nor the reverse.
  with open(os.path.join(warm_start.keras_dir(model_uri), warm_start.ARCHITECTURE_FILE)) as f:
    classes = json.load(f)['class_names']
  plain = alexnet.build_model(hp, 'cifar', 32, 10)
  start = warm_start.plan(fn_args.serving_model_dir, plain, classes, enabled=True)
  assert start.source is None and 'differs in architecture' in start.reason


def test_alternating_flips_train_every_epoch_in_full(tmp_path, artifacts):
  fn_args = make_fn_args(tmp_path, artifacts)
  fn_args.custom_config['train']['alternating_flip'] = True
  trainer.run_fn(fn_args)
  run = fn_args.model_run_dir
  assert json.load(open(os.path.join(run, warm_start.PLAN_FILE)))['alternating_flip']
  history = json.load(open(os.path.join(run, trainer.HISTORY_FILE)))
  steps = images_per_epoch(fn_args) // fn_args.custom_config['train']['batch_size']
  assert [(row['epoch'], row['steps']) for row in history] == [(1, steps), (2, steps)]
  trained = json.load(open(os.path.join(run, trainer.COMPUTE_FILE)))
  assert trained['images'] == 2 * images_per_epoch(fn_args)
  assert serving_check.check(fn_args.serving_model_dir).ok


@pytest.fixture(scope='module')
def smoke_search(tmp_path_factory, artifacts):
  """The smoke preset's own search (Hyperband, max 2 epochs, factor 2: 5 trials), run once."""
  assert config_lib.smoke().tune.algorithm == 'hyperband'
  return search(make_fn_args(tmp_path_factory.mktemp('smoke_search'), artifacts))


def trial_scores(tuner):
  return sorted((t.trial_id, t.score) for t in tuner.oracle.trials.values())


def test_same_seed_gives_the_same_best_hyperparameters(tmp_path, artifacts, smoke_search):
  """README "Same seed and data": the smoke preset's Hyperband search, run twice."""
  again = search(make_fn_args(tmp_path, artifacts))
  assert smoke_search.get_best_hyperparameters()[0].values == \
      again.get_best_hyperparameters()[0].values
  assert trial_scores(smoke_search) == trial_scores(again)  # every trial, not only the best
  tried = {json.dumps({k: v for k, v in t.hyperparameters.values.items()
                       if not k.startswith('tuner/')}, sort_keys=True)
           for t in smoke_search.oracle.trials.values()}
  assert len(tried) > 1  # a search with one candidate would agree by accident


def test_interrupted_search_resumes_instead_of_starting_over(tmp_path, artifacts):
  changes = {'algorithm': 'random', 'max_trials': 3}
  with pytest.raises(KeyboardInterrupt):
    search(make_fn_args(tmp_path, artifacts, changes), CountTrials(interrupt_at=3))
  resumed = CountTrials()
  fn_args = make_fn_args(tmp_path, artifacts, changes)
  tuner = search(fn_args, resumed)
  assert resumed.fits == 1  # only the interrupted third trial runs again
  completed = [t for t in tuner.oracle.trials.values() if t.status == 'COMPLETED']
  assert len(completed) == 3
  # The compute recorded is what this search ran: one trial of max_epochs.
  max_epochs = fn_args.custom_config['tune']['max_epochs']
  assert searched_compute(fn_args)['images'] == max_epochs * images_per_epoch(
      fn_args, fn_args.custom_config['tune']['train_examples'])
  # A finished search is reused (the day-two path): no trial, no compute.
  search(fn_args)
  assert searched_compute(fn_args) == flops.record([])


@pytest.mark.parametrize('tf_config, chief', [
    (None, True),
    ({'cluster': {'worker': ['a:1', 'b:2']}, 'task': {'type': 'worker', 'index': 0}}, True),
    ({'cluster': {'worker': ['a:1', 'b:2']}, 'task': {'type': 'worker', 'index': 1}}, False),
    ({'cluster': {'chief': ['c:0'], 'worker': ['a:1']}, 'task': {'type': 'worker', 'index': 0}},
     False),
    ({'cluster': {'chief': ['c:0'], 'worker': ['a:1']}, 'task': {'type': 'chief', 'index': 0}},
     True),
])
def test_only_the_chief_writes_the_trainer_outputs(monkeypatch, tmp_path, tf_config, chief):
  if tf_config:
    monkeypatch.setenv('TF_CONFIG', json.dumps(tf_config))
  else:
    monkeypatch.delenv('TF_CONFIG', raising=False)
  assert trainer.is_chief() == chief
  target = str(tmp_path / 'model')
  assert (trainer.output_dir(target) == target) == chief


@pytest.mark.parametrize('algorithm', ['hyperband', 'bayesian'])
def test_tfx_tuner_executor_writes_best_hyperparameters(tmp_path, artifacts, algorithm,
                                                       request):
  from tfx.components.tuner import executor as tfx_tuner
  from tfx.types import standard_artifacts
  if algorithm == 'hyperband':  # the smoke preset's search (max 2 epochs, factor 2)
    tuner = request.getfixturevalue('smoke_search')
  else:
    tuner = search(make_fn_args(tmp_path, artifacts, {'algorithm': algorithm, 'max_epochs': 2,
                                                      'max_trials': 2}))
  best, results = standard_artifacts.HyperParameters(), standard_artifacts.TunerResults()
  best.uri, results.uri = str(tmp_path / 'best'), str(tmp_path / 'results')
  os.makedirs(best.uri)
  os.makedirs(results.uri)
  tfx_tuner.write_best_hyperparameters(tuner, {'best_hyperparameters': [best],
                                               'tuner_results': [results]})
  written = json.load(open(os.path.join(best.uri, 'best_hyperparameters.txt')))
  assert written['values']['learning_rate'] > 0
  rows = json.load(open(os.path.join(results.uri, 'tuner_results.json')))
  assert len(rows) >= 2 and all('score' in r for r in rows)
  # The finished search keeps its trials but not their weights (tens of MB each).
  trial_files = [os.path.basename(p)
                 for p in glob.glob(os.path.join(tuner.project_dir, 'trial_*', '*'))]
  assert 'trial.json' in trial_files
  assert not [name for name in trial_files if name.startswith('checkpoint')], trial_files
  # Each trial has TensorBoard logs with the HParams dashboard's session record.
  tags = set()
  for events in glob.glob(os.path.join(tuner.project_dir, tuner_lib.TENSORBOARD_DIR, '*',
                                       'execution0', 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(events):
      tags.update(v.metadata.plugin_data.plugin_name for v in event.summary.value)
  assert 'hparams' in tags
