"""--runner kubeflow-v2: the same graph compiles to a KFP v2 / Vertex AI job spec, no data read."""

import json
import re
import os

# Pinned in requirements.lock: imported plainly, so a broken install fails the
# suite instead of skipping these tests.
import kfp.pipeline_spec.pipeline_spec_pb2  # noqa: F401  pylint: disable=unused-import
import pytest

import pipeline_runner
from tfx_pipeline import config as config_lib
from tfx_pipeline import kubeflow

COMPONENTS = {'ImageExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator',
              'DataGate',
              'Transform', 'Tuner', 'Trainer', 'LatestBlessedModelResolver', 'Evaluator',
              'ServingCheck', 'Pusher'}
IMAGE = 'gcr.io/my-project/cifar10-alexnet:test'


def compile_with(tmp_path, *flags):
  output = tmp_path / 'pipeline.json'
  code = pipeline_runner.main(['--runner', 'kubeflow-v2', '--output', str(output),
                               '--image', IMAGE, *flags])
  assert code == 0
  return json.loads(output.read_text())


def component_of(task: str) -> str:
  """The Resolver compiles to two tasks: <id>-model-resolver, <id>-model-blessing-resolver."""
  return task.split('-model')[0]


@pytest.fixture(scope='module')
def job(tmp_path_factory):
  """Compiled from the CLI with an image folder that does not exist here."""
  tmp = tmp_path_factory.mktemp('kubeflow')
  return compile_with(tmp, '--preset', 'cpu', '--image-dir', '/data/not/on/this/machine',
                      '--pipeline-root', 'gs://bucket/cifar/root')


def test_spec_names_every_component(job):
  tasks = kubeflow.task_names(job)
  assert {component_of(t) for t in tasks} == COMPONENTS
  assert len(tasks) == len(COMPONENTS) + 1  # the Resolver's two halves


def test_every_step_runs_the_given_image_with_the_project_module_code(job):
  executors = job['pipelineSpec']['deploymentSpec']['executors']
  images = {e['container']['image'] for e in executors.values() if 'container' in e}
  assert images == {IMAGE}
  text = json.dumps(job)
  for module_fn in ('components.transform.preprocessing_fn', 'tuning.tuner.tuner_fn',
                    'components.trainer.run_fn', 'components.example_gen.executor.Executor'):
    assert module_fn in text


def test_dependencies_follow_the_graph(job):
  tasks = job['pipelineSpec']['root']['dag']['tasks']
  assert set(tasks['Trainer']['dependentTasks']) >= {'ImageExampleGen', 'Transform', 'Tuner'}
  assert 'Trainer' in tasks['Evaluator']['dependentTasks']
  assert set(tasks['Pusher']['dependentTasks']) == {'Trainer', 'Evaluator', 'ServingCheck'}
  assert tasks['ServingCheck']['dependentTasks'] == ['Trainer']


def test_a_gs_pipeline_root_is_the_jobs_output_directory(job):
  assert job['runtimeConfig']['gcsOutputDirectory'] == 'gs://bucket/cifar/root'


def test_no_tune_leaves_the_tuner_out(tmp_path):
  tasks = kubeflow.task_names(compile_with(tmp_path, '--preset', 'smoke', '--no-tune'))
  assert {component_of(t) for t in tasks} == COMPONENTS - {'Tuner'}


def test_bad_config_still_fails_before_compiling(tmp_path, capsys):
  code = pipeline_runner.main(['--runner', 'kubeflow-v2', '--output', str(tmp_path / 'p.json'),
                               '--preset', 'smoke', '--epochs', '0'])
  assert code == 2 and 'epochs must be at least 1' in capsys.readouterr().err
  assert not (tmp_path / 'p.json').exists()


def mangled_urls(job):
  """Paths that were URLs before an os.path.abspath: '/cwd/gs:/bucket/x'."""
  return sorted(set(re.findall(r'/[a-z][a-z0-9+.-]*:/(?!/)[^"\\\s]*', json.dumps(job))))


def test_gs_paths_reach_the_job_unchanged(tmp_path):
  job = compile_with(tmp_path, '--preset', 'smoke', '--pipeline-root', 'gs://b/root',
                     '--serving-dir', 'gs://b/serving')
  assert mangled_urls(job) == []
  text = json.dumps(job)
  assert 'gs://b/serving' in text
  assert 'gs://b/root/tuner_state' in text and 'gs://b/root/train_backup' in text


def test_mangled_urls_finds_abspathed_urls():
  job = {'a': os.path.abspath('gs://b/serving'), 'b': 'gs://b/root', 'c': '/data/x'}
  assert mangled_urls(job) == ['/gs:/b/serving']


def test_container_warnings_name_local_paths_and_placeholder_image():
  local = config_lib.smoke()
  notes = ' | '.join(kubeflow.container_warnings(local, kubeflow.default_image({})))
  assert 'pipeline root' in notes and 'serving dir' in notes and 'placeholder' in notes
  cloud = config_lib.PipelineConfig(preset='smoke', pipeline_root='gs://b/r',
                                    serving_dir='gs://b/s')
  assert kubeflow.container_warnings(cloud, IMAGE) == []
  assert kubeflow.default_image({'GOOGLE_CLOUD_PROJECT': 'p1'}) == \
      'gcr.io/p1/cifar10-alexnet:latest'
