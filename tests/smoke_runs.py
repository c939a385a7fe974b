"""Smoke runs of the whole pipeline, made once per test session and shared.

One pipeline root on span folders (`span-{SPAN}`) goes through four runs:
  1        span 1, a first run: every component runs, a version is pushed;
  2        span 2 arrives: ExampleGen ingests only it, training reads the window
           of both spans, the Tuner reuses the search, the Trainer warm-starts
           and replays half of span 1 beside span 2 (`REPLAY`);
  'rerun'  the same command with no new span: everything upstream is cached;
  3        span 3 leaves one class out of train, and the candidate trained on it
           alone, from scratch, never sees that class: the per-class gate
           refuses it. With `--infer-dir`, the latest blessed model (an earlier
           day's) scores a folder of new images (fixtures.make_infer_folder).

tests/test_pipeline_e2e.py checks runs 1 and 'rerun' as a first run and a cached
one; tests/test_day_two_e2e.py checks the second day, tests/test_bulk_inference_e2e.py
day 3's predictions. Later runs overwrite
report.html and add versions, so each run leaves a `Day` snapshot of what the
tests read. The plain (non-span) layout runs end to end in
tests/test_reliability_e2e.py.
"""

import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple

import fixtures
from tfx_pipeline import run_summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIPELINE = 'cifar10-alexnet'
CLASSES = fixtures.CLASS_NAMES[:4]
PER_CLASS = 30
EPOCHS = '6'  # enough for the blessed model to get one class right (span 3 needs one)
DAYS = (1, 2, 'rerun', 3)
# Day two replays: its warm epoch trains on span 2 and half of span 1's examples.
REPLAY = ('--warm-start-replay', '0.5')


class Day(NamedTuple):
  since: float  # time.time() when the run started
  out: str  # its stdout
  trials: List[str]  # the Tuner's trial dirs after it
  pushed: List[str]  # the serving dir's versions after it
  report: str  # its report.html


def run_pipeline(image_dir, root, serving, *extra):
  cmd = [sys.executable, 'pipeline_runner.py', '--preset', 'smoke', '--image-dir', image_dir,
         '--pipeline-root', root, '--serving-dir', serving, *extra]
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=2400)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  return result.stdout


def trial_dirs(root):
  return sorted(d for _, dirs, _ in os.walk(os.path.join(root, 'tuner_state'))
                for d in dirs if d.startswith('trial_'))


def runs_of(days, day) -> Dict[str, run_summary.ComponentRun]:
  """{node id: ComponentRun} of one day's run (not of the runs after it)."""
  since = days[day].since
  until = min((days[d].since for d in DAYS if d in days and days[d].since > since),
              default=float('inf'))
  return {r.node_id: r for r in run_summary.component_runs(
      os.path.join(days['root'], 'metadata.sqlite'), PIPELINE, since)
          if r.execution.create_time_since_epoch / 1e3 < until}


def store_of(days):
  return run_summary.open_store(os.path.join(days['root'], 'metadata.sqlite'))


def best_class_of_blessed_model(days):
  """The label the last blessed model classifies best on day 2's eval data (>= 0.9)."""
  evaluator = runs_of(days, 2)['Evaluator'].execution
  evaluation, = run_summary.artifacts_by_key(store_of(days), evaluator.id)['evaluation']
  accuracy = run_summary.class_accuracy(evaluation.uri)
  blessed = accuracy['candidate'] if 'Evaluator: BLESSED' in days[2].out else \
      accuracy['baseline']
  label = max(blessed, key=blessed.get)
  assert blessed[label] >= 0.9, f'no class the blessed model gets right: {blessed}'
  return label


def run_day(days, day, *extra):
  """Runs the pipeline on the span pattern and records the run's snapshot as days[day]."""
  root, serving = days['root'], days['serving']
  since = time.time()
  out = run_pipeline(days['pattern'], root, serving, '--epochs', EPOCHS, *extra)
  with open(os.path.join(root, 'report.html')) as f:
    report = f.read()
  days[day] = Day(since, out, trial_dirs(root), sorted(os.listdir(serving)), report)


def make_days(tmp: str) -> dict:
  """The four runs. Keys: the DAYS, 'base', 'pattern', 'root', 'serving', 'forgotten'
  (the label span 3 leaves out of train), 'infer_dir' and 'infer' (what day 3 scores)."""
  base = os.path.join(tmp, 'in')
  days = {'base': base, 'pattern': os.path.join(base, 'span-{SPAN}'),
          'root': os.path.join(tmp, 'root'), 'serving': os.path.join(tmp, 'serving')}
  for span in (1, 2):
    fixtures.make_image_tree(os.path.join(base, f'span-{span}'), per_class=PER_CLASS,
                             classes=CLASSES, seed=span)
    run_day(days, span, *REPLAY)
  run_day(days, 'rerun', *REPLAY)
  # Span 3: one class only in eval, and it is one the blessed model gets right.
  forgotten = best_class_of_blessed_model(days)
  span3 = os.path.join(base, 'span-3')
  fixtures.make_image_tree(span3, per_class=PER_CLASS, classes=CLASSES, seed=3,
                           splits=('train', 'eval'))
  shutil.rmtree(os.path.join(span3, 'train', CLASSES[forgotten]))
  days['infer_dir'] = os.path.join(tmp, 'new-images')
  days['infer'] = fixtures.make_infer_folder(days['infer_dir'], CLASSES)
  # Its label mix drifts: --on-drift warn lets it through to the Evaluator.
  run_day(days, 3, '--train-spans', '1', '--from-scratch', '--on-drift', 'warn',
          '--max-regression', '1', '--max-class-regression', '0.3',
          '--infer-dir', days['infer_dir'])
  days['forgotten'] = forgotten
  return days
