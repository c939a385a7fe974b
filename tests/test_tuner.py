"""Which keras-tuner search a run uses: reused across new data, new on --retune or a new space."""

import json
import os

import fixtures
from tfx_pipeline import config
from tuning import tuner

SETTINGS = config.smoke().module_config()
CLASSES = ['cat', 'dog']


def test_the_search_key_ignores_data_but_not_model_tuning_or_classes():
  key = tuner.search_digest(SETTINGS, CLASSES)
  retune = {**SETTINGS, 'tune': {**SETTINGS['tune'], 'retune': True}}
  assert tuner.search_digest(retune, CLASSES) == key
  wider = {**SETTINGS, 'tune': {**SETTINGS['tune'], 'dense_units': [256]}}
  assert tuner.search_digest(wider, CLASSES) != key
  assert tuner.search_digest(SETTINGS, CLASSES + ['frog']) != key


def test_a_model_switch_that_is_off_keeps_the_key_it_had_before_the_switch_existed():
  switch = next(k for k, v in SETTINGS['model'].items() if v is False)
  before = {**SETTINGS, 'model': {k: v for k, v in SETTINGS['model'].items() if k != switch}}
  assert tuner.search_digest(SETTINGS, CLASSES) == tuner.search_digest(before, CLASSES)
  on = {**SETTINGS, 'model': {**SETTINGS['model'], switch: True}}
  assert tuner.search_digest(on, CLASSES) != tuner.search_digest(SETTINGS, CLASSES)


def test_unset_conv_widths_keep_the_key_and_set_ones_change_it():
  assert SETTINGS['model']['conv_widths'] is None
  before = {**SETTINGS, 'model': {k: v for k, v in SETTINGS['model'].items()
                                  if k != 'conv_widths'}}
  assert tuner.search_digest(SETTINGS, CLASSES) == tuner.search_digest(before, CLASSES)
  wider = {**SETTINGS, 'model': {**SETTINGS['model'], 'conv_widths': [64, 128, 256, 256, 256]}}
  assert tuner.search_digest(wider, CLASSES) != tuner.search_digest(SETTINGS, CLASSES)


def test_a_finished_search_is_reused_until_retune_starts_the_next_generation(tmp_path):
  tuner_dir = str(tmp_path)
  project, why = tuner.choose_project(tuner_dir, 'hyperband', 'abc', retune=False)
  assert project == 'hyperband-abc-g0' and why.startswith('new search: none yet')
  os.makedirs(tmp_path / project)
  (tmp_path / project / 'oracle.json').write_text(json.dumps({}))
  project, why = tuner.choose_project(tuner_dir, 'hyperband', 'abc', retune=False)
  assert project == 'hyperband-abc-g0' and why.startswith('reused the search')
  project, why = tuner.choose_project(tuner_dir, 'hyperband', 'abc', retune=True)
  assert (project, why) == ('hyperband-abc-g1', 'new search (--retune)')
  # Later runs without --retune use the newest generation.
  assert tuner.choose_project(tuner_dir, 'hyperband', 'abc', retune=False)[0] == \
      'hyperband-abc-g1'


def test_last_search_written_by_two_processes_at_once_stays_whole(tmp_path, monkeypatch):
  # A parallel search's chief and workers each write it when their search ends.
  path = str(tmp_path / tuner.LAST_SEARCH_FILE)
  last = fixtures.write_with_another_writer_midway(monkeypatch, tuner.write_json, path)
  with open(path) as f:
    assert json.load(f) == last
  assert os.listdir(tmp_path) == [tuner.LAST_SEARCH_FILE]
