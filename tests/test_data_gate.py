"""The data gate on real TFDV statistics of generated spans: what stops a run and what passes.

Each span goes through ImageExampleGen's executor and TFDV's statistics, as
in the pipeline; the curated schema (tfx_pipeline/schema.pbtxt) decides.
"""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
from tfx.types import standard_artifacts

import fixtures
from components.data_gate import checks
from components.example_gen import executor
from tfx_pipeline import pipeline
from tfx_pipeline.config import DataConfig

CLASSES = fixtures.CLASS_NAMES[:4]


def gray_tree(root, per_class=30, size=8):
  """Every image an 8x8 grayscale PNG: what a mislabelled thumbnail dump looks like."""
  rng = np.random.default_rng(5)
  for name in CLASSES:
    os.makedirs(os.path.join(root, 'train', name))
    for i in range(per_class):
      gray = rng.integers(0, 255, (size, size), dtype=np.uint8)
      with open(os.path.join(root, 'train', name, f'{i:04d}.png'), 'wb') as f:
        f.write(fixtures.encode(gray, 'png'))
  return root


def skewed_tree(root):
  """Clean images, but 85% of them airplanes (102 against 6 of each other class)."""
  fixtures.make_image_tree(root, per_class=6, classes=CLASSES, seed=6)
  fixtures.make_image_tree(os.path.join(root, 'more'), per_class=96, classes=CLASSES[:1],
                           seed=7)
  more = os.path.join(root, 'more', 'train', CLASSES[0])
  for name in os.listdir(more):
    os.rename(os.path.join(more, name), os.path.join(root, 'train', CLASSES[0], 'more-' + name))
  shutil.rmtree(os.path.join(root, 'more'))
  return root


def statistics(tmp, tree, schema):
  """{split: DatasetFeatureStatisticsList} of `tree` as the pipeline computes them."""
  import tensorflow_data_validation as tfdv
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(tmp, 'examples')
  executor.Executor().Do({}, {executor.EXAMPLES_KEY: [examples]}, {
      executor.DATA_CONFIG_KEY: json.dumps(dataclasses.asdict(
          DataConfig(image_dir=tree, eval_percent=20)))})
  return {split: tfdv.generate_statistics_from_tfrecord(
      os.path.join(examples.uri, f'Split-{split}', '*.gz'),
      output_path=os.path.join(tmp, f'{split}.stats'),
      stats_options=tfdv.StatsOptions(schema=schema))
          for split in ('train', 'eval')}


@pytest.fixture(scope='module')
def schema():
  import tensorflow_data_validation as tfdv
  return tfdv.load_schema_text(pipeline.CURATED_SCHEMA)


@pytest.fixture(scope='module')
def spans(tmp_path_factory, schema):
  tmp = str(tmp_path_factory.mktemp('gate'))
  trees = {
      'previous': fixtures.make_image_tree(f'{tmp}/previous', per_class=30, classes=CLASSES,
                                           seed=1),
      'clean': fixtures.make_image_tree(f'{tmp}/clean', per_class=30, classes=CLASSES,
                                        seed=2),
      'gray': gray_tree(f'{tmp}/gray'),
      'skewed': skewed_tree(f'{tmp}/skewed'),
  }
  return {name: statistics(f'{tmp}/{name}-out', tree, schema) for name, tree in trees.items()}


def test_a_clean_span_passes(spans, schema):
  findings = checks.validate(spans['clean'], schema, spans['previous']['train'])
  assert findings.clean, findings
  assert checks.verdict(findings, 'fail', 'span 1').startswith('passed: no schema anomaly')


def test_a_grayscale_thumbnail_span_drifts_on_size_channels_and_brightness(spans, schema):
  findings = checks.validate(spans['gray'], schema, spans['previous']['train'])
  assert not findings.schema
  drifted = {line.split(':')[0] for line in findings.drift}
  assert {'height', 'width', 'channels'} <= drifted
  assert checks.blocks(findings, 'fail') and not checks.blocks(findings, 'warn')
  line = next(l for l in findings.drift if l.startswith('channels'))
  assert 'above the threshold 0.2' in line  # the figure and the threshold


def test_a_skewed_label_mix_drifts_on_the_label(spans, schema):
  findings = checks.validate(spans['skewed'], schema, spans['previous']['train'])
  label = [line for line in findings.drift if line.startswith('label:')]
  # (The fixture's colours follow the class, so brightness drifts with it.)
  assert len(label) == 1 and 'Linfty distance' in label[0] and 'threshold 0.15' in label[0]
  assert not findings.schema
  words = checks.verdict(findings, 'warn', 'span 1')
  assert words.startswith('drift (against span 1, warning only (--on-drift warn)): ')


def test_without_a_previous_span_only_the_schema_applies(spans, schema):
  assert checks.validate(spans['gray'], schema, None).clean


def test_a_schema_anomaly_always_blocks(spans, schema):
  import copy
  strict = copy.deepcopy(schema)
  next(f for f in strict.feature if f.name == 'channels').int_domain.min = 3
  findings = checks.validate(spans['gray'], strict, None)
  assert findings.schema and all(l.split(': ')[1] == 'channels' for l in findings.schema)
  assert checks.blocks(findings, 'warn')
