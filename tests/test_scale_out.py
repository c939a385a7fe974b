"""Scale-out engines on localhost: multi-worker training and a parallel Tuner search.

The processes are real: two Trainer workers under MultiWorkerMirroredStrategy,
each with its own TF_CONFIG, and keras-tuner's chief plus two workers over
gRPC, all on 127.0.0.1 with free ports. They run the project's own `run_fn`
and `tuner_fn` on the smoke preset and the small artifacts of
test_module_chain.py. Every group is bounded by a timeout
(components/scale_out/cluster.py), so a hung peer fails the test instead of
the suite. The group tests at the top use plain Python processes: seconds.
"""

import glob
import json
import os
import signal
import sys
import time

import pytest
import tensorflow as tf

from components import data as data_lib
from components import trainer
from components.scale_out import cluster, multi_worker, parallel_tuning
from components.serving_check import check as serving_check

from test_module_chain import artifacts, make_fn_args  # noqa: F401  (a fixture)

GROUP_TIMEOUT_S = 900  # one group of TensorFlow processes; about 2-4 min on a busy 2-core machine
KILLED_GRACE_S = 30  # how long the survivors get after a worker is killed


def sleeper(name, seconds, status=0):
  code = (f'import sys, time; print("{name} up", flush=True); time.sleep({seconds}); '
          f'sys.exit({status})')
  return cluster.Member(name, (sys.executable, '-c', code))


# The launcher on plain processes (no TensorFlow): seconds.

def test_multi_worker_group_fails_plainly_and_stops_the_others_after_the_grace():
  import tempfile
  with tempfile.TemporaryDirectory() as logs:
    start = time.monotonic()
    with cluster.Group('multi-worker training', [sleeper('worker-0', 600),
                                                 sleeper('worker-1', 0.5, status=3)],
                       logs) as group:
      with pytest.raises(cluster.ClusterFailed) as failed:
        group.wait(timeout_s=60, grace_s=1)
    took = time.monotonic() - start
    assert took < 10, took  # not the sleeper's 600 s
    message = str(failed.value)
    assert message.startswith('multi-worker training failed: worker-1 exited with status 3')
    assert 'worker-0: stopped by the launcher' in message
    assert '| worker-1 up' in message  # the failed process's log tail
    assert group.processes['worker-0'].returncode == -signal.SIGKILL


def test_multi_worker_group_times_out_instead_of_hanging(tmp_path):
  with cluster.Group('multi-worker training', [sleeper('worker-0', 600)],
                     str(tmp_path)) as group:
    with pytest.raises(cluster.ClusterFailed, match='no result after the 1 s timeout'):
      group.wait(timeout_s=1, grace_s=1)


def test_multi_worker_tf_config_names_every_worker_and_its_own_index():
  ports = cluster.free_ports(3)
  assert len(set(ports)) == 3
  spec = multi_worker.cluster_spec(ports)
  configs = [json.loads(multi_worker.tf_config(spec, i)) for i in range(3)]
  assert all(c['cluster'] == {'worker': [f'127.0.0.1:{p}' for p in ports]} for c in configs)
  assert [c['task'] for c in configs] == [{'type': 'worker', 'index': i} for i in range(3)]
  with pytest.raises(ValueError, match='worker index 3 is not in a cluster of 3'):
    multi_worker.tf_config(spec, 3)
  one = multi_worker.members('args.json', ports[:1])
  assert len(one) == 1 and 'TF_CONFIG' in one[0].drop_env and not one[0].env


def test_parallel_tuning_ids_and_environment():
  assert parallel_tuning.tuner_ids(2) == ['chief', 'tuner0', 'tuner1']
  assert parallel_tuning.tuner_env('tuner1', 8000) == {
      'KERASTUNER_TUNER_ID': 'tuner1', 'KERASTUNER_ORACLE_IP': '127.0.0.1',
      'KERASTUNER_ORACLE_PORT': '8000'}
  with pytest.raises(ValueError, match='at least 1 worker'):
    parallel_tuning.tuner_ids(0)


@pytest.mark.parametrize('files, workers, expected', [
    (1, 1, tf.data.experimental.AutoShardPolicy.AUTO),
    (1, 2, tf.data.experimental.AutoShardPolicy.DATA),  # AUTO would fail: a worker without a file
    (4, 2, tf.data.experimental.AutoShardPolicy.AUTO),
])
def test_multi_worker_shard_policy(files, workers, expected):
  assert data_lib.shard_policy(files, workers) == expected


def test_multi_worker_shards_of_one_file_are_disjoint_and_complete(tmp_path):
  """tf.data's own auto-shard rewrite, as each worker applies it, on the policy we set."""
  from tensorflow.python.data.experimental.ops import distribute  # the rewrite strategies use
  path = str(tmp_path / 'one.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(40):
      writer.write(str(i).encode())

  def worker_input():  # each worker builds its own, with the same seeds (run_fn's order)
    tf.random.set_seed(7)
    ds = tf.data.TFRecordDataset([path]).map(lambda r: tf.strings.to_number(r, tf.int32))
    return data_lib.for_workers(ds.shuffle(40, seed=1).batch(4), [path], workers=2)

  shards = [sorted(int(x) for batch in distribute._AutoShardDataset(worker_input(), 2, i)
                   for x in batch) for i in range(2)]
  assert shards[0] and shards[1]
  assert not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == list(range(40))


# Real engines: TensorFlow processes (minutes).

@pytest.fixture(scope='module')
def parallel_search(tmp_path_factory, artifacts):  # noqa: F811
  """The smoke preset's Hyperband search, run by a chief and two tuner workers."""
  tmp = tmp_path_factory.mktemp('parallel_search')
  fn_args = make_fn_args(tmp, artifacts)
  return parallel_tuning.search(fn_args, workers=2, work_dir=str(tmp / 'processes'),
                                timeout_s=GROUP_TIMEOUT_S)


@pytest.mark.slow
def test_parallel_tuning_spreads_trials_and_drops_checkpoints_when_all_are_done(
    parallel_search):
  result = parallel_search
  assert [o.name for o in result.outcomes] == ['chief', 'tuner0', 'tuner1']
  ran = result.trials['tuner0'] + result.trials['tuner1']
  assert result.trials['tuner0'] and result.trials['tuner1'], result.trials  # both worked
  assert len(ran) == len(set(ran))  # no trial ran twice
  recorded = {}
  for path in glob.glob(os.path.join(result.project_dir, 'trial_*', 'trial.json')):
    with open(path) as f:
      trial = json.load(f)
    recorded[trial['trial_id']] = trial
  assert set(recorded) == set(ran)  # the oracle knows every trial, and only those
  assert all(t['status'] == 'COMPLETED' for t in recorded.values())
  # The best is a trial with the top score (on the smoke data's few eval images,
  # two trials can tie; keras-tuner then keeps either).
  top = max(t['score'] for t in recorded.values())
  assert result.best_hyperparameters['values'] in [
      t['hyperparameters']['values'] for t in recorded.values() if t['score'] == top]
  # The weights existed while the workers ran, and are gone now that all are done.
  assert result.dropped
  assert not glob.glob(os.path.join(result.project_dir, 'trial_*', 'checkpoint*'))


@pytest.mark.slow
def test_parallel_tuning_best_hyperparameters_reach_multi_worker_training(
    tmp_path, artifacts, parallel_search):  # noqa: F811
  fn_args = make_fn_args(tmp_path, artifacts,
                         hyperparameters=parallel_search.best_hyperparameters)
  work = tmp_path / 'processes'
  outcomes = multi_worker.train(fn_args, workers=2, work_dir=str(work),
                                timeout_s=GROUP_TIMEOUT_S)
  assert [(o.name, o.returncode) for o in outcomes] == [('worker-0', 0), ('worker-1', 0)]

  # Both workers trained every epoch, in step (the logs are averaged over the workers).
  lines = [[line for line in open(o.log) if line.startswith('Trainer epoch')] for o in outcomes]
  assert [len(worker) for worker in lines] == [2, 2]
  assert [line.split(', loss')[1] for line in lines[0]] == \
      [line.split(', loss')[1] for line in lines[1]]

  # The chief alone wrote the history, the hyperparameters and the export.
  used = json.load(open(os.path.join(fn_args.model_run_dir, trainer.HPARAMS_FILE)))
  best = parallel_search.best_hyperparameters['values']
  assert used == {k: v for k, v in best.items() if not k.startswith('tuner/')}
  history = json.load(open(os.path.join(fn_args.model_run_dir, trainer.HISTORY_FILE)))
  assert [row['epoch'] for row in history] == [1, 2]
  # worker-1's throwaway outputs are gone
  assert not glob.glob(str(work / 'tmp' / f'{trainer.WORKER_OUTPUT_PREFIX}*'))
  result = serving_check.check(fn_args.serving_model_dir)  # as TF Serving loads it
  assert result.ok, result.failure


@pytest.mark.slow
def test_multi_worker_training_fails_plainly_when_a_worker_is_killed(
    tmp_path, artifacts):  # noqa: F811
  fn_args = make_fn_args(tmp_path, artifacts)
  fn_args.custom_config['train']['epochs'] = 50  # still training when the kill comes
  with multi_worker.start(fn_args, workers=2, work_dir=str(tmp_path / 'processes')) as group:
    deadline = time.monotonic() + GROUP_TIMEOUT_S
    while 'Trainer epoch 1/' not in open(group.logs['worker-1']).read():
      assert time.monotonic() < deadline and group.processes['worker-1'].poll() is None
      time.sleep(0.5)
    os.killpg(group.processes['worker-1'].pid, signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(cluster.ClusterFailed) as failed:
      group.wait(timeout_s=GROUP_TIMEOUT_S, grace_s=KILLED_GRACE_S)
  assert time.monotonic() - killed < KILLED_GRACE_S + 15
  assert str(failed.value).startswith(
      'multi-worker training failed: worker-1 was killed by SIGKILL after')
  assert 'worker-0:' in str(failed.value)
  assert not os.path.exists(os.path.join(fn_args.serving_model_dir, 'saved_model.pb'))
