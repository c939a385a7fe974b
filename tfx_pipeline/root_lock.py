"""One run per pipeline root: an exclusive lock on `<pipeline_root>/.run.lock`.

Two local runs on one root share one SQLite MLMD, one tuner directory and one
Trainer backup: the second takes the first's half-finished components as
cache hits, and its summary lists the first run's executions. The runner
therefore takes this lock before any component runs (and before it empties the
root's temp dir), and a second run stops at once, naming the holder.

The lock is `flock(2)` on the lock file. The kernel releases it when the
holding process dies, however it dies, so a killed run never leaves the root
locked; the file itself stays, with the dead holder's pid in it, and the next
run takes it over with a note. While a run holds the lock the file records
who it is (pid, host, start time, command); a run that ends normally empties
it. The file is never deleted: deleting a lock file lets two processes lock
two different files of the same name.

Object stores (gs://, s3://) have no such lock: there the runner says so and
goes on. Whether flock works across hosts depends on the filesystem (on
Linux, NFS emulates it with byte-range locks, which do).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from typing import List, Optional, Sequence

LOCK_FILE = '.run.lock'
EXIT_BUSY = 75  # sysexits.h EX_TEMPFAIL: another run holds the root; try again later
_COMMAND_CHARS = 300  # the holder's command line is recorded up to this length


class RootBusy(Exception):
  """Another live run holds the pipeline root."""


@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds (or last held) a pipeline root, as recorded in its lock file."""
  pid: int
  host: str
  started: float  # unix time
  command: str

  @classmethod
  def this_process(cls, argv: Optional[Sequence[str]] = None) -> 'Holder':
    command = shlex.join(sys.argv if argv is None else argv)
    return cls(os.getpid(), socket.gethostname(), time.time(), command[:_COMMAND_CHARS])

  @classmethod
  def parse(cls, text: str) -> Optional['Holder']:
    """The holder recorded in `text`; None for an empty or unreadable record."""
    try:
      record = json.loads(text)
      return cls(int(record['pid']), str(record['host']), float(record['started']),
                 str(record.get('command', '')))
    except (ValueError, KeyError, TypeError):
      return None

  def dumps(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  def describe(self) -> str:
    started = time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(self.started))
    return f'pid {self.pid} on {self.host}, started {started}: {self.command}'

  def is_gone(self) -> bool:
    """True when the holder was on this host and its pid no longer exists."""
    return self.host == socket.gethostname() and not pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
  """Whether a process with this pid exists on this host (of any user)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's process
  return True


def lock_path(pipeline_root: str) -> str:
  return os.path.join(pipeline_root, LOCK_FILE)


class RunLock:
  """A held pipeline-root lock; `release()` (or leaving `with`) lets the next run in.

  `notes` are lines for the console: a taken-over lock, an unlockable root.
  """

  def __init__(self, fd: Optional[int], path: Optional[str], notes: List[str]):
    self._fd = fd
    self.path = path
    self.notes = notes

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.ftruncate(self._fd, 0)  # an empty file: the last run ended normally
    except OSError:
      pass  # a full disk cannot stop the release; the flock goes either way
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self) -> 'RunLock':
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _read(fd: int) -> str:
  return os.pread(fd, 4096, 0).decode('utf-8', 'replace')


def _record(fd: int, holder: Holder) -> None:
  data = holder.dumps().encode()
  os.pwrite(fd, data, 0)  # write, then cut: a reader never sees an empty file for a held lock
  os.ftruncate(fd, len(data))


def busy_message(pipeline_root: str, holder: Optional[Holder]) -> str:
  who = holder.describe() if holder else 'a run that has not recorded itself yet'
  return (f'pipeline root {pipeline_root} is in use by another run ({who}); '
          'one run per root: wait for it to end or give another --pipeline-root')


def takeover_note(path: str, holder: Holder) -> str:
  state = 'is gone' if holder.is_gone() else 'no longer holds it'
  return f'note: taking over {path} from a run that {state} ({holder.describe()})'


def acquire(pipeline_root: str, argv: Optional[Sequence[str]] = None) -> RunLock:
  """Locks `pipeline_root` for this process, or raises RootBusy naming the holder.

  Never waits. Creates the root if needed. A lock file whose recorded holder
  is gone is taken over; the note says so.
  """
  if '://' in pipeline_root:
    return RunLock(None, None, [
        f'note: {pipeline_root} cannot be locked (not a local path); make sure no other '
        'run uses this pipeline root at the same time'])
  os.makedirs(pipeline_root, exist_ok=True)
  path = lock_path(pipeline_root)
  # O_CLOEXEC (Python's default, PEP 446): programs the run starts do not inherit the lock.
  fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = Holder.parse(_read(fd))
    os.close(fd)
    raise RootBusy(busy_message(pipeline_root, holder)) from None
  except BaseException:
    os.close(fd)
    raise
  notes = []
  previous = Holder.parse(_read(fd))
  if previous is not None:
    notes.append(takeover_note(path, previous))
  try:
    _record(fd, Holder.this_process(argv))
  except OSError as e:
    # A full disk: the lock holds all the same; only the holder's name is missing.
    notes.append(f'note: could not record this run in {path}: {e}')
  return RunLock(fd, path, notes)
