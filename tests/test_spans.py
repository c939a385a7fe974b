"""Spans on disk: TFX's `{SPAN}` resolution for image trees, and class agreement across spans."""

import os

import pytest

import fixtures
from components import features
from components.example_gen import driver
from components.example_gen import sources
from tfx_pipeline.config import DataConfig


def make_spans(base, spans, classes=fixtures.CLASS_NAMES[:3], per_class=2):
  for span in spans:
    fixtures.make_image_tree(os.path.join(base, f'span-{span}'), per_class=per_class,
                             classes=classes, seed=span)
  return os.path.join(base, 'span-{SPAN}')


def test_span_layout_splits_base_and_pattern(tmp_path):
  assert sources.span_layout(f'{tmp_path}/d/span-{{SPAN}}') == (f'{tmp_path}/d', 'span-{SPAN}')
  assert sources.span_layout(str(tmp_path)) == (str(tmp_path), '')


def test_latest_span_is_the_largest_number_not_the_newest_folder(tmp_path):
  pattern = make_spans(str(tmp_path), [1, 2, 10])
  assert sources.latest_span(pattern) == (10, os.path.join(str(tmp_path), 'span-10'))
  assert [s for s, _ in sources.span_roots(pattern)] == [1, 2, 10]
  assert sources.latest_span(str(tmp_path / 'span-2')) == (0, str(tmp_path / 'span-2'))


def test_a_pattern_that_matches_nothing_names_the_expected_layout(tmp_path):
  (tmp_path / 'span-1').mkdir()  # a span folder without images
  with pytest.raises(sources.SourceError, match=r'no span folder with images matches.*'
                                                r'span-1/train/<class>'):
    sources.latest_span(str(tmp_path / 'span-{SPAN}'))


def test_driver_resolves_span_root_and_a_fingerprint_that_changes_with_a_new_span(tmp_path):
  pattern = make_spans(str(tmp_path), [1])
  first = driver.resolve(DataConfig(image_dir=pattern), 'digest')
  assert (first['span'], first['version'], first['image_root']) == \
      (1, 0, str(tmp_path / 'span-1'))
  make_spans(str(tmp_path), [2])
  second = driver.resolve(DataConfig(image_dir=pattern), 'digest')
  assert second['span'] == 2 and second['input_fingerprint'] != first['input_fingerprint']
  assert sources.image_id_prefix(pattern, second['image_root']) == 'span-2/'
  assert sources.image_id_prefix(str(tmp_path / 'span-1'), str(tmp_path / 'span-1')) == ''


def test_a_span_that_drops_or_adds_a_class_fails_naming_the_classes(tmp_path):
  pattern = make_spans(str(tmp_path), [1], classes=('cat', 'dog', 'frog'))
  make_spans(str(tmp_path), [2], classes=('cat', 'dog', 'ship'))
  with pytest.raises(sources.SourceError) as e:
    sources.check_span_classes(pattern, ('cat', 'dog', 'ship'))
  assert "adds ['ship'] and drops ['frog'] against span 1" in str(e.value)
  sources.check_span_classes(pattern, ('cat', 'dog', 'frog'))  # agreeing classes pass


def test_the_training_window_refuses_artifacts_with_different_classes(tmp_path):
  for name, classes in (('a', ['cat', 'dog']), ('b', ['cat', 'dog', 'frog'])):
    os.makedirs(tmp_path / name / 'Split-train')
    features.write_class_names(str(tmp_path / name), classes)
  same = [str(tmp_path / 'a' / 'Split-train' / '*'), str(tmp_path / 'a' / 'Split-eval' / '*')]
  assert features.window_class_names(same) == ['cat', 'dog']
  with pytest.raises(ValueError, match=r"added \['frog'\], dropped \[\]"):
    features.window_class_names(same + [str(tmp_path / 'b' / 'Split-train' / '*')])
