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
