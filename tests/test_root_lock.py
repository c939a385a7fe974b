"""One run per pipeline root: a second run stops at once, a dead run's lock is taken over.

The holder is a real process (a small Python child that takes the lock the
way the runner does), so the kernel's flock semantics are what is tested.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

import fixtures
import pipeline_runner
from tfx_pipeline import root_lock

HOLDER = textwrap.dedent('''
    import subprocess, sys, time
    from tfx_pipeline import root_lock
    lock = root_lock.acquire(sys.argv[1], ['pipeline_runner.py', '--preset', 'cpu'])
    # A program the run started, which outlives it (the lock must not pass to it).
    child = subprocess.Popen(['sleep', '120'], close_fds=False)
    print(child.pid, flush=True)
    time.sleep(120)
    ''')


@pytest.fixture
def holder(tmp_path):
  """A process holding the lock on tmp_path/root: (Popen, its child's pid)."""
  root = str(tmp_path / 'root')
  process = subprocess.Popen([sys.executable, '-c', HOLDER, root], stdout=subprocess.PIPE,
                             text=True)
  grandchild = int(process.stdout.readline())
  yield process, grandchild
  for pid in (process.pid, grandchild):
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  process.wait()


def runner_argv(tmp_path):
  tree = fixtures.make_image_tree(str(tmp_path / 'tree'), per_class=1, classes=('a', 'b'))
  return ['--preset', 'smoke', '--image-dir', tree, '--pipeline-root', str(tmp_path / 'root')]


def test_a_second_run_stops_at_once_naming_the_holder(holder, tmp_path, capsys, monkeypatch):
  process, _ = holder
  root = tmp_path / 'root'
  lock_file = root / root_lock.LOCK_FILE
  recorded = lock_file.read_text()
  assert json.loads(recorded)['pid'] == process.pid

  def must_not_run(*args):
    raise AssertionError('the run went on although the root is held')
  monkeypatch.setattr(pipeline_runner, 'run_locally', must_not_run)
  code = pipeline_runner.main(runner_argv(tmp_path))
  captured = capsys.readouterr()
  err = captured.err.strip().splitlines()
  assert code == root_lock.EXIT_BUSY == 75
  assert len(err) == 1 and err[0].startswith(f'error: pipeline root {root} is in use'), err
  for words in (f'pid {process.pid} on {socket.gethostname()}', 'started 20',
                'pipeline_runner.py --preset cpu'):
    assert words in err[0]
  assert 'preset smoke' not in captured.out  # stopped before the run's own lines
  assert sorted(os.listdir(root)) == [root_lock.LOCK_FILE]  # no .scratch, no metadata.sqlite

  # The first run is unharmed: still alive, still holding, its record unchanged.
  assert process.poll() is None
  assert lock_file.read_text() == recorded
  with pytest.raises(root_lock.RootBusy):
    root_lock.acquire(str(root))


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_note(holder, tmp_path, capsys,
                                                              monkeypatch):
  process, grandchild = holder
  process.kill()  # SIGKILL: no cleanup runs; its child `sleep` lives on
  process.wait()
  assert root_lock.pid_alive(grandchild)
  root = str(tmp_path / 'root')
  seen = []

  def run_locally(args, config, notes):
    with pytest.raises(root_lock.RootBusy):  # held by this run now
      root_lock.acquire(root)
    seen.append(json.loads(open(root_lock.lock_path(root)).read()))
    return 0
  monkeypatch.setattr(pipeline_runner, 'run_locally', run_locally)
  assert pipeline_runner.main(runner_argv(tmp_path)) == 0
  out = capsys.readouterr().out
  assert (f'note: taking over {root_lock.lock_path(root)} from a run that is gone '
          f'(pid {process.pid} on {socket.gethostname()}, started ') in out
  assert seen[0]['pid'] == os.getpid() and '--image-dir' in seen[0]['command']

  # A run that ends normally leaves an empty record: the next run takes it without a note.
  assert open(root_lock.lock_path(root)).read() == ''
  with root_lock.acquire(root) as lock:
    assert lock.notes == []


def test_a_record_that_names_no_live_holder_is_described_plainly(tmp_path):
  assert root_lock.Holder.parse('') is None
  assert root_lock.Holder.parse('{"pid": "x"}') is None
  assert 'has not recorded itself yet' in root_lock.busy_message('/r', None)
  elsewhere = root_lock.Holder(12, 'other-host', 0.0, 'pipeline_runner.py')
  assert not elsewhere.is_gone()  # another host's pid says nothing here
  assert root_lock.takeover_note('/r/.run.lock', elsewhere).startswith(
      'note: taking over /r/.run.lock from a run that no longer holds it (pid 12 on other-host')
  assert root_lock.Holder.parse(elsewhere.dumps()) == elsewhere


def test_an_object_store_root_is_not_locked_and_says_so():
  with root_lock.acquire('gs://bucket/pipeline') as lock:
    assert lock.path is None
    assert lock.notes == ['note: gs://bucket/pipeline cannot be locked (not a local path); '
                          'make sure no other run uses this pipeline root at the same time']
