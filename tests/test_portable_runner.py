"""The Beam components on Beam's portable runner: a job service and an external worker pool.

The DirectRunner runs every DoFn in the launching process (or its forks), so
it cannot see what breaks on Flink, Spark or Dataflow: module code a worker
cannot import, paths only the launcher can read, objects that do not pickle,
counters that are not gathered back from the workers. Here a job service
(`local_job_service_main`) and an SDK worker pool (`worker_pool_main`) run
on localhost as separate processes, in a working directory of their own, and
a smoke-size pipeline sends ImageExampleGen, StatisticsGen, Transform and
Evaluator through them (`--beam-arg`, as docs/scale_out.md shows).
"""

import contextlib
import glob
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import fixtures
from tfx_pipeline import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEAM_COMPONENTS = ('ImageExampleGen', 'StatisticsGen', 'Transform', 'Evaluator')
START_TIMEOUT = 120  # seconds for a service to listen (it imports Beam first)
RUN_TIMEOUT = 1500  # seconds for the partial run: a hung worker fails the test, not the suite


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: str) -> None:
  deadline = time.monotonic() + START_TIMEOUT
  while time.monotonic() < deadline:
    assert process.poll() is None, open(log).read()[-3000:]
    with socket.socket() as s:
      if s.connect_ex(('127.0.0.1', port)) == 0:
        return
    time.sleep(0.5)
  raise AssertionError(f'nothing listens on port {port} after {START_TIMEOUT}s:\n'
                       + open(log).read()[-3000:])


@contextlib.contextmanager
def beam_services(workdir: str):
  """(job endpoint port, worker pool port, job service log); both stopped on exit.

  The worker pool starts each SDK worker as `python -c ...`, whichever
  `python` is first on PATH: this environment's, as a worker image would have.
  """
  env = {**os.environ, 'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
         'TF_CPP_MIN_LOG_LEVEL': '2'}
  env.pop('PYTHONPATH', None)  # the workers import the installed package, not the checkout
  job_port, pool_port = free_port(), free_port()
  logs = {name: os.path.join(workdir, f'{name}.log') for name in ('job_service', 'worker_pool')}
  commands = {
      'job_service': ['-m', 'apache_beam.runners.portability.local_job_service_main',
                      f'--port={job_port}', f'--staging_dir={workdir}/staging'],
      'worker_pool': ['-m', 'apache_beam.runners.worker.worker_pool_main',
                      f'--service_port={pool_port}'],
  }
  processes = {}
  try:
    for name, args in commands.items():
      with open(logs[name], 'w') as log:
        processes[name] = subprocess.Popen([sys.executable, *args], cwd=workdir, env=env,
                                           stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
    wait_for_port(job_port, processes['job_service'], logs['job_service'])
    wait_for_port(pool_port, processes['worker_pool'], logs['worker_pool'])
    yield job_port, pool_port, logs
  finally:
    for process in processes.values():
      with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)  # the pool's workers are in its process group
      process.wait(timeout=30)


def portable_args(job_port: int, pool_port: int):
  return ['--beam-arg=--runner=PortableRunner',
          f'--beam-arg=--job_endpoint=localhost:{job_port}',
          '--beam-arg=--environment_type=EXTERNAL',
          f'--beam-arg=--environment_config=localhost:{pool_port}']


@pytest.mark.parametrize('runner, expected', [
    ('PortableRunner', config_lib.PORTABLE_JOB_TIMEOUT),
    ('FlinkRunner', config_lib.PORTABLE_JOB_TIMEOUT),
    ('DataflowRunner', None),  # no job service in between
    (None, None),  # the DirectRunner
])
def test_portable_runners_get_a_job_service_deadline_longer_than_a_job(runner, expected):
  beam_args = (f'--runner={runner}',) if runner else ()
  args = config_lib.PipelineConfig(preset='smoke', beam_args=beam_args).beam_pipeline_args
  timeouts = [int(a.split('=')[1]) for a in args if a.startswith('--job_server_timeout=')]
  assert timeouts == ([expected] if expected else [])


def test_a_deadline_the_user_gave_is_kept():
  args = config_lib.PipelineConfig(
      preset='smoke', beam_args=('--runner=PortableRunner', '--job_server_timeout=300'),
  ).beam_pipeline_args
  assert [a for a in args if 'job_server_timeout' in a] == ['--job_server_timeout=300']


@pytest.fixture(scope='module')
def portable_run(tmp_path_factory):
  """A partial smoke run up to the Evaluator on the portable runner, and what it left."""
  tmp = tmp_path_factory.mktemp('portable')
  tree = fixtures.make_image_tree(str(tmp / 'tree'), per_class=6, classes=('cat', 'dog'))
  # One file the decode check must skip: a count that only adds up if the
  # workers' counters reach the launcher.
  with open(os.path.join(tree, 'train', 'dog', 'broken.jpg'), 'wb') as f:
    f.write(fixtures.encode(fixtures.synthetic_image(1, np.random.default_rng(0)), 'jpg')[:200])
  services = tmp / 'services'
  services.mkdir()
  root = tmp / 'root'
  with beam_services(str(services)) as (job_port, pool_port, logs):
    started = time.time()
    result = subprocess.run(
        [sys.executable, 'pipeline_runner.py', '--preset', 'smoke', '--image-dir', tree,
         '--eval-percent', '34', '--no-tune', '--epochs', '1', '--to-node', 'Evaluator',
         '--pipeline-root', str(root), '--serving-dir', str(tmp / 'serving'),
         *portable_args(job_port, pool_port)],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    seconds = time.time() - started
    service_logs = {name: open(path).read() for name, path in logs.items()}
  assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:],
                                  service_logs['job_service'][-3000:])
  print(f'portable partial run: {seconds:.0f}s')
  return dict(tree=tree, root=str(root), logs=service_logs, stdout=result.stdout)


def outputs(root: str):
  """{node id: {output key: [artifact]}} of the run's executions (MLMD)."""
  from tfx_pipeline import run_summary
  metadata = os.path.join(root, 'metadata.sqlite')
  store = run_summary.open_store(metadata)
  runs = run_summary.component_runs(metadata, config_lib.PipelineConfig(preset='smoke').pipeline_name, 0)
  return {r.node_id: run_summary.artifacts_by_key(store, r.execution.id) for r in runs
          if r.state == 'done'}


@pytest.mark.slow  # shares one partial pipeline run (portable_run)
def test_beam_components_ran_as_portable_runner_jobs_on_the_worker_pool(portable_run):
  out = outputs(portable_run['root'])
  assert set(BEAM_COMPONENTS) <= set(out), sorted(out)
  # Each Beam component was a job of the job service, run to the end...
  jobs = portable_run['logs']['job_service'].count('Completed job in')
  assert jobs >= len(BEAM_COMPONENTS), portable_run['logs']['job_service'][-3000:]
  assert portable_run['logs']['job_service'].count('with state DONE') == jobs
  # ...whose DoFns ran in SDK workers that the pool started, not in the launcher.
  assert portable_run['logs']['worker_pool'].count('Starting worker with command') >= jobs


@pytest.mark.slow  # shares one partial pipeline run (portable_run)
def test_example_gen_counts_from_remote_workers_match_the_files(portable_run):
  import tensorflow as tf
  from components import features
  examples = outputs(portable_run['root'])['ImageExampleGen']['examples'][0]
  counts = json.load(open(os.path.join(examples.uri, features.COUNTS_FILE)))['splits']
  files = glob.glob(os.path.join(portable_run['tree'], 'train', '*', '*'))
  records = {}
  for split in ('train', 'eval'):
    shards = glob.glob(os.path.join(examples.uri, f'Split-{split}', '*.gz'))
    records[split] = sum(1 for _ in tf.data.TFRecordDataset(shards, compression_type='GZIP'))
    assert counts[split]['written'] == records[split] > 0
    assert counts[split]['read'] == counts[split]['written'] + counts[split]['skipped']
  assert sum(c['read'] for c in counts.values()) == len(files)
  assert sum(c['skipped'] for c in counts.values()) == 1  # broken.jpg
  assert 'broken.jpg' in open(os.path.join(examples.uri, features.BAD_IMAGES_FILE)).read()
  # The counts recorded in MLMD are the same Beam counters.
  for split in ('train', 'eval'):
    assert examples.custom_properties[f'{split}_written'].int_value == records[split]


@pytest.mark.slow  # shares one partial pipeline run (portable_run)
def test_statistics_transform_and_evaluation_cover_every_written_example(portable_run):
  import tensorflow_data_validation as tfdv
  import tensorflow_transform as tft
  out = outputs(portable_run['root'])
  examples = out['ImageExampleGen']['examples'][0]
  written = {s: examples.custom_properties[f'{s}_written'].int_value for s in ('train', 'eval')}
  statistics = out['StatisticsGen']['statistics'][0].uri
  for split in ('train', 'eval'):
    stats = tfdv.load_stats_binary(os.path.join(statistics, f'Split-{split}', 'FeatureStats.pb'))
    assert stats.datasets[0].num_examples == written[split]
  # The transform graph that the workers analyzed loads.
  graph = tft.TFTransformOutput(out['Transform']['transform_graph'][0].uri)
  assert graph.transformed_feature_spec()
  # The Evaluator's confusion matrix, combined from the workers' partial ones,
  # holds every eval example once.
  assert confusion_totals(out['Evaluator']['evaluation'][0].uri) == [written['eval']]


def confusion_totals(evaluation_uri: str):
  """Examples in each overall-slice confusion matrix of a TFMA evaluation."""
  import tensorflow_model_analysis as tfma
  return [sum(e.num_weighted_examples for e in matrices[0].entries)
          for plots in tfma.load_plots(evaluation_uri) if not plots.slice_key.single_slice_keys
          for kv in plots.plot_keys_and_values
          if kv.key.name == 'multi_class_confusion_matrix_plot'
          for matrices in [kv.value.multi_class_confusion_matrix_at_thresholds.matrices]
          if matrices]
