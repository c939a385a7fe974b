"""report.html from plain data: sections, embedded PNGs, and sentences for what is missing.

The report of a real smoke run is checked in test_pipeline_e2e.py (same run, no extra one).
"""

import base64
import dataclasses
import re

import pytest

from tfx_pipeline import config as config_lib
from tfx_pipeline import report
from tfx_pipeline import run_facts as facts

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
CLASSES = ['cat', 'dog', 'frog']


def embedded_pngs(page: str):
  return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def section(page: str, key: str) -> str:
  return page.split(f'<section id="{key}">', 1)[1].split('</section>', 1)[0]


def full_inputs(**changes) -> facts.RunFacts:
  inputs = facts.RunFacts(
      title='cifar10-alexnet: run report', started=1.7e9, pipeline_root='/tmp/root',
      preset='smoke', gate={'min_accuracy': 0.5, 'max_regression': 0.0},
      timeline=[facts.TimelineRow('ImageExampleGen', 'done', 0.0, 12.0),
                facts.TimelineRow('Trainer', 'cached', 12.0, 0.0),
                facts.TimelineRow('Evaluator', 'FAILED', 13.0, 4.0)],
      class_names=CLASSES,
      counts={'splits': {
          'train': {'read': 9, 'written': 8, 'skipped': 1, 'classes': {
              'cat': {'read': 3, 'written': 2, 'skipped': 1}, 'dog': {'read': 3, 'written': 3},
              'frog': {'read': 3, 'written': 3}}},
          'eval': {'read': 3, 'written': 3, 'skipped': 0, 'classes': {
              'cat': {'read': 1, 'written': 1}, 'dog': {'read': 1, 'written': 1},
              'frog': {'read': 1, 'written': 1}}}},
          'skipped_files': ['train\ttrain/cat/broken.jpg\tInvalid JPEG data'],
          'ignored': [{'path': '.git', 'reason': 'hidden'}], 'unused_splits': [],
          'eval_from': 'train (hash, 10%)'},
      tuning=facts.Tuning(
          trials=[{'trial_id': '0', 'score': 0.4, 'dropout': 0.5},
                  {'trial_id': '1', 'score': 0.6, 'dropout': 0.25}],
          best={'dropout': 0.25}),
      history=[{'epoch': 1, 'loss': 2.0, 'accuracy': 0.3, 'val_loss': 2.1, 'val_accuracy': 0.3},
               {'epoch': 2, 'loss': 1.0, 'accuracy': 0.6, 'val_loss': 1.5, 'val_accuracy': 0.5}],
      evaluation=facts.Evaluation(
          accuracy={'candidate': 0.62, 'baseline': 0.70},
          confusion=[[2, 1, 0], [0, 3, 0], [1, 0, 2]], validation_ok=False,
          failures=['sparse_categorical_accuracy (change vs baseline): -0.08 < 0'],
          blessed=False, baseline_uri='/tmp/root/Trainer/model/3'),
      pushed_to=facts.Missing('Nothing was pushed: the Evaluator did not bless the model.'))
  return dataclasses.replace(inputs, **changes)


def test_full_report_has_every_section_and_its_plots():
  page = report.build_report(full_inputs())
  for key, title in report.SECTIONS:
    assert f'<section id="{key}"><h2>{title}</h2>' in page
  pngs = embedded_pngs(page)
  assert len(pngs) == 5  # timeline, images per class, trials, curves, confusion matrix
  assert all(p.startswith(PNG_SIGNATURE) and len(p) > 2000 for p in pngs)
  assert 'tensorboard --logdir /tmp/root' in page


def test_evaluation_shows_the_decision_and_the_baseline_comparison():
  page = report.build_report(full_inputs())
  assert 'Decision: NOT blessed' in page
  assert 'baseline (latest blessed)' in page and '-0.0800' in page
  assert 'change vs baseline' in page and '/tmp/root/Trainer/model/3' in page
  assert 'not below the latest blessed model' in page
  # per-class accuracy on the eval split: 2/3, 3/3, 2/3
  assert re.search(r'<td>cat</td><td>3</td><td>0.667</td>', page)
  assert re.search(r'<td>dog</td><td>3</td><td>1.000</td>', page)


def test_data_section_counts_per_class_and_lists_skipped_files():
  page = report.build_report(full_inputs())
  assert '<td>cat</td><td>3</td><td>2</td><td>1</td><td>1</td><td>1</td><td>0</td>' in page
  assert '<tr class="total"><td>total</td><td>9</td><td>8</td><td>1</td>' in page
  assert 'train/cat/broken.jpg' in page and 'Invalid JPEG data' in page
  assert '1 undecodable or oversized image(s)' in page and '.git' in page


def test_tuner_table_ranks_by_score_and_marks_the_best():
  page = section(report.build_report(full_inputs()), 'tuning')
  rows = re.findall(r'<tr( class="best")?><td>(best: )?(\d)</td><td>([\d.]+)</td>', page)
  assert rows == [(' class="best"', 'best: ', '1', '0.6'), ('', '', '0', '0.4')]
  assert len(embedded_pngs(page)) == 1  # the trials plot


def test_tuner_table_keeps_hyperband_epochs_and_drops_its_bookkeeping():
  trials = [{'trial_id': '0', 'score': 0.4, 'learning_rate': 0.1, 'tuner/epochs': 2,
             'tuner/bracket': 1, 'tuner/round': 0},
            {'trial_id': '1', 'score': 0.6, 'learning_rate': 0.05, 'tuner/epochs': 4,
             'tuner/bracket': 0, 'tuner/round': 0, 'tuner/trial_id': '0'}]
  page = section(report.build_report(full_inputs(
      tuning=facts.Tuning(trials, {'learning_rate': 0.05}))), 'tuning')
  header = re.findall(r'<th>([^<]+)</th>', page)
  assert header == ['trial', 'score', 'learning_rate', 'epochs']


def test_missing_inputs_become_sentences_not_crashes():
  why = facts.Missing
  page = report.build_report(full_inputs(
      timeline=why('MLMD recorded no component execution for this run.'),
      counts=why('No data counts: the ImageExampleGen FAILED in this run (see the log).'),
      tuning=why('No tuner trials: the Tuner is switched off (--no-tune).'),
      history=why('No training history: the Trainer did not run in this run.'),
      evaluation=why('No evaluation: the Evaluator did not run in this run.'),
      pushed_to=why('No push: the Pusher did not run in this run.'), class_names=[],
      spans=why('No training window: the Trainer did not run in this run.')))
  assert embedded_pngs(page) == []
  assert page.count('class="missing"') == 7
  assert '--no-tune' in page and 'FAILED' in page


def test_spans_section_lists_the_window_and_the_path_taken():
  spans = facts.Spans(
      rows=[facts.SpanRow(1, 40, 5, False), facts.SpanRow(2, 8, 1, True)],
      paths=['Tuner: reused the search', 'Trainer: warm start from the blessed model x'])
  page = section(report.build_report(full_inputs(spans=spans)), 'spans')
  assert '<td>span 1</td><td>40</td><td>5</td><td>earlier run</td>' in page
  assert '<td>span 2</td><td>8</td><td>1</td><td>this run</td>' in page
  assert '<li>Trainer: warm start from the blessed model x</li>' in page


def test_per_class_accuracy_is_shown_against_the_baseline():
  evaluation = dataclasses.replace(
      full_inputs().evaluation,
      class_accuracy={'candidate': {0: 0.0, 1: 1.0, 2: 0.5}, 'baseline': {0: 0.5, 1: 1.0}})
  page = section(report.build_report(full_inputs(
      evaluation=evaluation, gate={'min_accuracy': 0.5, 'max_regression': 0.0,
                                   'max_class_regression': 0.05})), 'evaluation')
  assert '<th>candidate</th><th>baseline</th><th>change</th>' in page
  assert '<td>cat</td><td>3</td><td>0.000</td><td>0.500</td><td>-0.500</td>' in page
  assert '<td>frog</td><td>3</td><td>0.500</td><td>-</td><td>-</td>' in page
  assert 'on every class, at most 0.050 below the baseline' in page


def test_outcome_names_a_failure_first_then_the_decision():
  assert report.outcome(full_inputs()) == 'FAILED in Evaluator.'
  ok = full_inputs(timeline=[facts.TimelineRow('Pusher', 'done', 0.0, 1.0)],
                   evaluation=dataclasses.replace(full_inputs().evaluation, blessed=True),
                   pushed_to='/serving/17')
  assert report.outcome(ok) == 'BLESSED and pushed to /serving/17.'
  assert report.outcome(dataclasses.replace(
      ok, evaluation=facts.Missing('no'))) == 'No decision: the Evaluator left no blessing.'


def test_the_timeline_gives_the_compute_beside_the_wall_time():
  body = report.timeline_section([facts.TimelineRow('Trainer', 'done', 0.0, 60.0)],
                                 'Compute: Tuner 0.0 TFLOP (off), Trainer 1.2 TFLOP, total '
                                 '1.2 TFLOP (budget 400)')
  assert ('<p>1 component, 1m00s from the first start to the last finish.</p><p>Compute: '
          'Tuner 0.0 TFLOP (off), Trainer 1.2 TFLOP, total 1.2 TFLOP (budget 400).</p>') in body


def test_text_from_the_run_is_escaped():
  page = report.build_report(full_inputs(class_names=['<b>cat</b>', 'dog', 'frog']))
  assert '<b>cat</b>' not in page and '&lt;b&gt;cat&lt;/b&gt;' in page


def test_confusion_from_entries_drops_no_prediction_and_sums_weights():
  entries = [(0, 0, 2.0), (0, 0, 1.0), (1, -1, 5.0), (1, 0, 1.0)]
  assert facts.confusion_from_entries(entries, 2) == [[3.0, 0.0], [1.0, 0.0]]
  assert facts.per_class_accuracy([[3, 0], [1, 0], [0, 0]][:2]) == [1.0, 0.0]
  assert facts.per_class_accuracy([[0, 0], [0, 4]]) == [None, 1.0]


@pytest.mark.parametrize('best, expected', [
    ({'dropout': 0.5}, '0'),  # the values the Tuner chose, even if not the top score
    ({}, '1'),  # no best_hyperparameters.txt: the top score
])
def test_best_trial_id(best, expected):
  trials = [{'trial_id': '0', 'score': 0.4, 'dropout': 0.5},
            {'trial_id': '1', 'score': 0.6, 'dropout': 0.25}]
  assert facts.best_trial_id(trials, best) == expected


def test_write_report_without_any_run_says_so(tmp_path):
  config = dataclasses.replace(
      config_lib.smoke(), pipeline_root=str(tmp_path / 'root'),
      tune=dataclasses.replace(config_lib.smoke().tune, enabled=False))
  path = report.write_report(config, since=0.0)
  page = open(path).read()
  assert path == str(tmp_path / 'root' / 'report.html')
  assert 'MLMD recorded no component execution' in page
  assert 'the Tuner is switched off (--no-tune)' in page
  assert 'the Trainer did not run in this run' in page


def test_summary_words_name_the_candidate_and_baseline_accuracy():
  from tfx_pipeline import run_summary
  assert run_summary.accuracy_words({}) == ''
  assert run_summary.accuracy_words({'candidate': 0.85504}) == 'eval accuracy 0.8550. '
  assert (run_summary.accuracy_words({'candidate': 0.8, 'baseline': 0.81})
          == 'eval accuracy 0.8000 (baseline 0.8100). ')
