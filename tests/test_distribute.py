"""Scale-out paths on one machine: two-replica training, strategy choice, Beam multi-processing.

TensorFlow fixes its devices at the first op, so everything that splits the
CPU into logical devices or sets TF_CONFIG runs in a fresh Python process.
"""

import dataclasses
import glob
import json
import os
import socket
import subprocess
import sys

import pytest

import fixtures

pytestmark = pytest.mark.slow  # fresh TensorFlow processes: about a minute each on 2 cores

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TWO_REPLICAS = r'''
import json, os, sys
sys.path.insert(0, os.path.join(os.getcwd(), 'tests'))
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import numpy as np
import fixtures
from models import alexnet, training
from tfx_pipeline.config import TuneConfig
from tuning.search_space import search_space


class ReplicaSteps(keras.metrics.Metric):
  """Per-replica count of training steps: an entry stays 0 if its replica never computed."""

  def __init__(self, replicas):
    super().__init__(name='replica_steps')
    self.replicas = replicas
    self.steps = self.add_variable(shape=(replicas,), initializer='zeros',
                                   aggregation='sum', name='steps')

  def update_state(self, y_true, y_pred, sample_weight=None):
    context = tf.distribute.get_replica_context()
    if context is None:  # Keras builds metrics once in cross-replica context
      return
    self.steps.assign_add(tf.one_hot(context.replica_id_in_sync_group, self.replicas))

  def result(self):
    return keras.ops.sum(self.steps)


rng = np.random.default_rng(0)
labels = np.arange(320) % 10
images = np.stack([fixtures.synthetic_image(int(l), rng) for l in labels]).astype('float32')
images = (images - 128.0) / 64.0
batch, epochs = 32, 4
data = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(320, seed=0).batch(batch)

strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
hp = search_space(TuneConfig(width_multipliers=(0.25,), dense_units=(64,)), 'cifar')
with strategy.scope():
  model = alexnet.build_model(hp, 'cifar', 32, 10)
  training.compile_model(model, hp, total_steps=epochs * len(labels) // batch)
  replica_steps = ReplicaSteps(strategy.num_replicas_in_sync)
  model.compile(optimizer=model.optimizer, loss=model.loss,
                metrics=[keras.metrics.SparseCategoricalAccuracy(name=training.ACCURACY),
                         replica_steps])
history = model.fit(data, epochs=epochs, verbose=0)  # outside the scope, as run_fn does
kernel = model.get_layer('conv1_conv').kernel.value
print(json.dumps({
    'replicas': strategy.num_replicas_in_sync,
    'variable_devices': sorted(v.device for v in kernel.values),
    'replica_steps': replica_steps.steps.numpy().tolist(),
    'steps_per_epoch': len(labels) // batch,  # Keras resets metrics every epoch
    'loss': history.history['loss'],
}))
'''

PICK_STRATEGY = r'''
import json
import tensorflow as tf
from components import trainer
s = trainer.strategy()
kinds = {'multi_worker': tf.distribute.MultiWorkerMirroredStrategy,
         'mirrored': tf.distribute.MirroredStrategy}
kind = next((k for k, cls in kinds.items() if isinstance(s, cls)), 'default')
print(json.dumps({'strategy': kind, 'replicas': s.num_replicas_in_sync}))
'''


def run_python(script, env_changes=None, timeout=600):
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', **(env_changes or {})}
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, result.stderr[-4000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_alexnet_trains_on_two_mirrored_replicas():
  out = run_python(TWO_REPLICAS)
  assert out['replicas'] == 2
  assert [d.split('/')[-1] for d in out['variable_devices']] == ['device:CPU:0', 'device:CPU:1']
  # Every step of the last epoch ran on both replicas (each got half of the global batch).
  assert out['replica_steps'] == [out['steps_per_epoch']] * 2
  loss = out['loss']
  assert loss[-1] < 0.8 * loss[0], loss


@pytest.mark.parametrize('tf_config, expected', [
    (None, ('default', 1)),  # no TF_CONFIG, no GPU
    ('worker', ('multi_worker', 1)),  # a one-worker cluster
])
def test_strategy_follows_tf_config(tf_config, expected):
  env = {'TF_CONFIG': ''}
  if tf_config:
    env['TF_CONFIG'] = json.dumps({'cluster': {'worker': [f'127.0.0.1:{free_port()}']},
                                   'task': {'type': 'worker', 'index': 0}})
  out = run_python(PICK_STRATEGY, env)
  assert (out['strategy'], out['replicas']) == expected


def test_example_gen_counts_are_exact_under_beam_multi_processing(tmp_path):
  """Beam metrics from worker processes add up to what was written and skipped."""
  import tensorflow as tf
  from tfx.dsl.components.base import base_beam_executor
  from tfx.types import standard_artifacts
  from components import features
  from components.example_gen import executor
  from tfx_pipeline.config import DataConfig, PipelineConfig

  (tmp_path / 'outside.jpg').write_bytes(b'not used')
  expected = fixtures.make_messy_tree(str(tmp_path / 'tree'), str(tmp_path / 'outside.jpg'))
  data = DataConfig(image_dir=str(tmp_path / 'tree'), eval_percent=30)
  beam_args = list(PipelineConfig(preset='smoke', beam_workers=2).beam_pipeline_args)
  assert '--direct_running_mode=multi_processing' in beam_args
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  executor.Executor(base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=beam_args)).Do(
          {}, {executor.EXAMPLES_KEY: [examples]},
          {executor.DATA_CONFIG_KEY: json.dumps(dataclasses.asdict(data))})

  counts = json.load(open(os.path.join(examples.uri, features.COUNTS_FILE)))['splits']
  for split in ('train', 'eval'):
    files = glob.glob(os.path.join(examples.uri, f'Split-{split}', '*.gz'))
    labels = [tf.train.Example.FromString(r.numpy()).features.feature[
        features.LABEL_KEY].int64_list.value[0]
              for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]
    assert counts[split]['written'] == len(labels)
    for label, name in enumerate(expected['classes']):
      assert counts[split]['classes'].get(name, {}).get('written', 0) == labels.count(label)
  assert sum(c['skipped'] for c in counts.values()) == len(expected['bad'])
  assert sum(c['written'] for c in counts.values()) == expected['good']
