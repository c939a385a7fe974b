"""Progress lines and the end-of-run summary, from MLMD records made by hand (no timing)."""

from ml_metadata.proto import metadata_store_pb2

from tfx_pipeline import run_summary

SINCE = 1000.0  # run start, epoch seconds


def component(node_id, state, start_s, end_s, execution_id=1):
  execution = metadata_store_pb2.Execution(
      id=execution_id, create_time_since_epoch=int(start_s * 1000),
      last_update_time_since_epoch=int(end_s * 1000))
  return run_summary.ComponentRun(node_id, state, end_s - start_s, execution)


def test_a_component_seen_first_when_already_done_still_gets_its_started_line():
  run = component('ImageExampleGen', 'done', SINCE + 3, SINCE + 4)
  assert run_summary.progress_lines(run, None, SINCE) == [
      '[     3s] ImageExampleGen started', '[     4s] ImageExampleGen done in 1s']


def test_a_running_component_gets_started_then_done_once_each():
  running = component('Trainer', 'running', SINCE + 10, SINCE + 12)
  done = component('Trainer', 'done', SINCE + 10, SINCE + 75)
  assert run_summary.progress_lines(running, None, SINCE) == ['[    10s] Trainer started']
  assert run_summary.progress_lines(running, 'running', SINCE) == []
  assert run_summary.progress_lines(done, 'running', SINCE) == ['[  1m15s] Trainer done in 1m05s']
  assert run_summary.progress_lines(done, 'done', SINCE) == []


def test_the_printer_reports_every_component_whatever_the_poll_timing(monkeypatch):
  """One poll after everything finished prints what a poll per state change would."""
  runs = [component('ImageExampleGen', 'done', SINCE + 1, SINCE + 2, 1),
          component('StatisticsGen', 'cached', SINCE + 2, SINCE + 2, 2),
          component('Trainer', 'FAILED', SINCE + 3, SINCE + 9, 3)]
  monkeypatch.setattr(run_summary, 'component_runs', lambda *args: runs)
  lines = []
  printer = run_summary.ProgressPrinter('unused', 'p', SINCE, out=lines.append)
  printer.poll()
  printer.poll()  # nothing changed: nothing printed again
  assert [line.split('] ')[1] for line in lines] == [
      'ImageExampleGen started', 'ImageExampleGen done in 1s',
      'StatisticsGen started', 'StatisticsGen cached in 0s',
      'Trainer started', 'Trainer FAILED in 6s']


def test_the_summary_names_the_serving_check_verdict():
  summary = run_summary.Summary([], True, 'Every threshold passed.', None, 60.0,
                                serving_check=False,
                                serving_check_words='oneDNN off: Could not find variable x')
  assert ('Serving check: FAILED, nothing pushed: oneDNN off: Could not find variable x'
          in summary.text())


def test_the_compute_line_sets_tuner_and_trainer_against_the_budget():
  line = run_summary.compute_words(run_summary.Compute(61.23), run_summary.Compute(198.4), 400)
  assert line == 'Compute: Tuner 61.2 TFLOP, Trainer 198.4 TFLOP, total 259.6 TFLOP (budget 400)'
  over = run_summary.compute_words(run_summary.Compute(0.0, 'off'),
                                   run_summary.Compute(401.0), 400)
  assert over == 'Compute: Tuner 0.0 TFLOP (off), Trainer 401.0 TFLOP, total 401.0 TFLOP ' \
      '(budget 400, OVER)'
  smoke = run_summary.compute_words(run_summary.Compute(0.00312),
                                    run_summary.Compute(None, 'FAILED'), None)
  assert smoke == ('Compute: Tuner 0.0031 TFLOP, Trainer not recorded (FAILED), '
                   'total at least 0.0031 TFLOP')


def test_a_component_spends_what_it_recorded_and_nothing_when_cached():
  record = {'fits': [], 'images': 1_000, 'training_tflop': 0.16}
  done = component('Trainer', 'done', SINCE, SINCE + 60)
  assert run_summary.component_compute(done, record) == run_summary.Compute(0.16)
  assert run_summary.component_compute(done, None) == run_summary.Compute(None, 'no record')
  reused = {'fits': [], 'images': 0, 'training_tflop': 0.0}  # a finished search, reloaded
  assert run_summary.component_compute(done, reused) == \
      run_summary.Compute(0.0, 'nothing trained')
  cached = component('Trainer', 'cached', SINCE, SINCE)
  assert run_summary.component_compute(cached, record) == run_summary.Compute(0.0, 'cached')
  failed = component('Trainer', 'FAILED', SINCE, SINCE + 9)
  assert run_summary.component_compute(failed, record) == run_summary.Compute(None, 'FAILED')
  assert run_summary.component_compute(None, None, 'off') == run_summary.Compute(0.0, 'off')


def test_the_summary_prints_the_compute_after_the_wall_times():
  runs = [component('Trainer', 'done', SINCE, SINCE + 60)]
  summary = run_summary.Summary(runs, None, '', None, 75.0,
                                compute='Compute: Tuner 0.0 TFLOP (cached), ...')
  lines = summary.text().splitlines()
  assert lines[1] == 'Run finished in 1m15s:'
  assert lines[2].split() == ['Trainer', 'done', '1m00s']
  assert lines[3] == 'Compute: Tuner 0.0 TFLOP (cached), ...'


def test_the_compute_line_reads_the_tuner_and_trainer_records(tmp_path, monkeypatch):
  import dataclasses
  import json
  import os
  from components import trainer as trainer_lib
  from tfx_pipeline import config
  from tuning import tuner as tuner_lib
  cfg = dataclasses.replace(config.cpu(), pipeline_root=str(tmp_path / 'root'))
  os.makedirs(cfg.tuner_dir)
  with open(os.path.join(cfg.tuner_dir, tuner_lib.LAST_SEARCH_FILE), 'w') as f:
    json.dump({'project': 'p', 'reason': 'new search',
               'compute': {'fits': [], 'images': 259_584, 'training_tflop': 41.8}}, f)
  model_run = tmp_path / 'model_run'
  model_run.mkdir()
  (model_run / trainer_lib.COMPUTE_FILE).write_text(
      json.dumps({'fits': [], 'images': 1_347_840, 'training_tflop': 217.07}))
  monkeypatch.setattr(run_summary, 'artifacts_by_key', lambda store, execution_id: {
      'model_run': [metadata_store_pb2.Artifact(uri=str(model_run))]})
  runs = [component('Tuner', 'done', SINCE, SINCE + 60, 1),
          component('Trainer', 'done', SINCE + 60, SINCE + 90, 2)]
  assert run_summary.compute_line(None, runs, cfg) == (
      'Compute: Tuner 41.8 TFLOP, Trainer 217.1 TFLOP, total 258.9 TFLOP (budget 400)')
  runs[0] = component('Tuner', 'cached', SINCE, SINCE, 1)  # its record is an earlier run's
  assert run_summary.compute_line(None, runs, cfg).startswith(
      'Compute: Tuner 0.0 TFLOP (cached), Trainer 217.1 TFLOP')
  no_tune = dataclasses.replace(cfg, tune=dataclasses.replace(cfg.tune, enabled=False))
  assert run_summary.compute_line(None, runs[1:], no_tune).startswith(
      'Compute: Tuner 0.0 TFLOP (off)')
