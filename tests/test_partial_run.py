"""--to-node: a partial run that stops after one component (used to time the data stages)."""

import logging
import os

import pytest

import fixtures
import pipeline_runner
from tfx_pipeline import config as config_lib


@pytest.fixture(scope='module')
def smoke_pipeline(tmp_path_factory):
  from tfx_pipeline import pipeline as pipeline_lib
  tree = fixtures.make_image_tree(str(tmp_path_factory.mktemp('tree')), per_class=1,
                                  classes=('a', 'b'))
  config = config_lib.PipelineConfig(preset='smoke',
                                     data=config_lib.DataConfig(image_dir=tree))
  return pipeline_lib.create_pipeline(config)


def test_to_node_stops_after_that_component(smoke_pipeline):
  options = pipeline_runner.partial_run(smoke_pipeline, 'Transform')
  assert list(options.to_nodes) == ['Transform'] and not options.from_nodes
  assert pipeline_runner.partial_run(smoke_pipeline, None) is None


def test_unknown_node_is_a_config_error_naming_the_choices(smoke_pipeline):
  with pytest.raises(config_lib.ConfigError, match="'Transfrom' is not a component.*Transform"):
    pipeline_runner.partial_run(smoke_pipeline, 'Transfrom')


def test_unknown_node_exits_2_before_anything_runs(tmp_path, capsys):
  tree = fixtures.make_image_tree(str(tmp_path / 'tree'), per_class=1, classes=('a', 'b'))
  stderr, level = os.fstat(2), logging.getLogger().level
  handlers = list(logging.getLogger().handlers)
  root = tmp_path / 'root'
  code = pipeline_runner.main(['--preset', 'smoke', '--image-dir', tree, '--to-node', 'Nope',
                               '--pipeline-root', str(root)])
  captured = capsys.readouterr()
  err = captured.err.strip().splitlines()
  assert code == 2 and len(err) == 1 and "'Nope' is not a component" in err[0]
  assert not (root / 'metadata.sqlite').exists()
  # It got as far as the run's log (tfx_pipeline/console.py), named it, and gave the
  # process its stderr and logging back.
  logs = os.listdir(root / 'logs')
  assert len(logs) == 1 and f'log: {root / "logs" / logs[0]}' in captured.out
  assert 'run log of: ' in (root / 'logs' / logs[0]).read_text()
  assert (os.fstat(2).st_dev, os.fstat(2).st_ino) == (stderr.st_dev, stderr.st_ino)
  assert logging.getLogger().level == level and logging.getLogger().handlers == handlers
