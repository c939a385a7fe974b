"""A group of local processes that succeeds together or fails plainly: start, watch, stop.

A worker that dies leaves its peers waiting: MultiWorkerMirroredStrategy's
collectives block on the missing replica and keras-tuner's chief serves its
oracle until every worker has said goodbye. So the group is watched from
outside. `Group.wait` returns when every process has exited 0. When one
fails, the others get `grace_s` to fail by themselves (what TensorFlow or
keras-tuner make of a lost peer is then in their logs), and are killed after
it; past `timeout_s` everything is killed. Either way `ClusterFailed` says
which process ended how, after how long, and where its log is.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import time
from typing import Dict, List, Mapping, Optional, Sequence

POLL_S = 0.2  # how often the group is checked; a failure is seen within this
LOG_TAIL_LINES = 3  # lines of a failed process's log quoted in the error


class ClusterFailed(RuntimeError):
  """A process of the group failed, or the group ran out of time; all of it is stopped."""


@dataclasses.dataclass(frozen=True)
class Member:
  """One process: a name for messages and logs, its command, its extra environment."""
  name: str
  argv: Sequence[str]
  env: Mapping[str, str] = dataclasses.field(default_factory=dict)
  drop_env: Sequence[str] = ()  # variables of the launcher's environment it must not see


@dataclasses.dataclass(frozen=True)
class Outcome:
  name: str
  returncode: int
  seconds: float  # from the group's start to this process's exit
  log: str
  stopped: bool = False  # killed by the group (after another's failure, or the timeout)


def free_ports(n: int, host: str = '127.0.0.1') -> List[int]:
  """`n` distinct ports that were free a moment ago (all held at once while picking)."""
  sockets = [socket.socket() for _ in range(n)]
  try:
    for s in sockets:
      s.bind((host, 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def describe_exit(returncode: int) -> str:
  if returncode == 0:
    return 'finished'
  if returncode < 0:
    try:
      return f'was killed by {signal.Signals(-returncode).name}'
    except ValueError:
      return f'was killed by signal {-returncode}'
  return f'exited with status {returncode}'


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> List[str]:
  try:
    with open(path, errors='replace') as f:
      return [line.rstrip() for line in f.readlines() if line.strip()][-lines:]
  except OSError:
    return []


def failure_message(what: str, outcomes: Sequence[Outcome], timeout_s: Optional[float]) -> str:
  """One paragraph: what failed first, then every process's fate, with log tails."""
  failed = [o for o in outcomes if o.returncode != 0 and not o.stopped]
  if failed:
    first = min(failed, key=lambda o: o.seconds)
    head = (f'{what} failed: {first.name} {describe_exit(first.returncode)} '
            f'after {first.seconds:.0f} s')
  else:
    head = f'{what} failed: no result after the {timeout_s:.0f} s timeout'
  rows = []
  for o in outcomes:
    fate = 'stopped by the launcher' if o.stopped else describe_exit(o.returncode)
    rows.append(f'  {o.name}: {fate} after {o.seconds:.0f} s (log: {o.log})')
    if o.returncode != 0 and not o.stopped:
      rows.extend(f'    | {line}' for line in log_tail(o.log))
  return '\n'.join([head] + rows)


class Group:
  """Starts `members` at once, each in its own session, output to `<log_dir>/<name>.log`.

  A context manager: leaving the block kills whatever still runs.
  """

  def __init__(self, what: str, members: Sequence[Member], log_dir: str):
    self.what = what
    self.start = time.monotonic()
    self.logs: Dict[str, str] = {}
    self.processes: Dict[str, subprocess.Popen] = {}
    os.makedirs(log_dir, exist_ok=True)
    for member in members:
      self.add(member, log_dir)

  def add(self, member: Member, log_dir: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in member.drop_env}
    env.update(member.env)
    log = os.path.join(log_dir, f'{member.name}.log')
    with open(log, 'w') as out:
      self.processes[member.name] = subprocess.Popen(
          list(member.argv), env=env, stdout=out, stderr=subprocess.STDOUT,
          stdin=subprocess.DEVNULL, start_new_session=True)
    self.logs[member.name] = log
    return self.processes[member.name]

  def __enter__(self) -> 'Group':
    return self

  def __exit__(self, *exc) -> None:
    self.stop_all()

  def stop(self, name: str) -> None:
    process = self.processes[name]
    if process.poll() is None:
      try:
        os.killpg(process.pid, signal.SIGKILL)  # its children too
      except ProcessLookupError:
        pass
      process.wait()

  def stop_all(self) -> None:
    for name in self.processes:
      self.stop(name)

  def wait(self, timeout_s: float, grace_s: float = 30.0) -> List[Outcome]:
    """Outcomes when every process exited 0; else ClusterFailed once the group is stopped."""
    ended: Dict[str, Outcome] = {}
    first_failure = None
    while True:
      now = time.monotonic() - self.start
      for name, process in self.processes.items():
        if name not in ended and process.poll() is not None:
          ended[name] = Outcome(name, process.returncode, now, self.logs[name])
          if process.returncode != 0 and first_failure is None:
            first_failure = now
      if len(ended) == len(self.processes):
        break
      over_time = now > timeout_s
      over_grace = first_failure is not None and now > first_failure + grace_s
      if over_time or over_grace:
        for name in self.processes:
          if name not in ended:
            self.stop(name)
            ended[name] = Outcome(name, self.processes[name].returncode, now,
                                  self.logs[name], stopped=True)
        break
      time.sleep(POLL_S)
    outcomes = [ended[name] for name in self.processes]
    if any(o.returncode != 0 for o in outcomes):
      raise ClusterFailed(failure_message(self.what, outcomes, timeout_s))
    return outcomes
