"""A pytest plugin: a skipped test fails the run unless tests/allowed_skips.txt lists it.

A test that skips guards nothing, and pytest exits 0 on skips: a broken
install (`pytest.importorskip` of a pinned package), a `skipif` that is true
on the CI machine or an `xfail` would all pass CI unnoticed. This plugin
records every skip -- `pytest.skip`, `skipif`, `importorskip`, module-level
skips at collection, xfail and xpass -- and turns the exit status into 1
when one is not on the allow-list. Deselection (`-m "not slow"`) is not a
skip.

Allow-list lines: `<node id or fnmatch pattern>  # <reason>`; a line without
a reason is a usage error. Registered from tests/conftest.py
(`pytest_plugins`).
"""

import fnmatch
import os
from typing import List, NamedTuple

import pytest

ALLOWLIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'allowed_skips.txt')
ALLOWLIST_OPTION = '--allowed-skips'


class Allowed(NamedTuple):
  pattern: str
  reason: str


def parse_allowlist(text: str) -> List[Allowed]:
  """Entries of an allow-list file; raises pytest.UsageError on an entry without a reason."""
  entries = []
  for number, line in enumerate(text.splitlines(), 1):
    if not line.strip() or line.lstrip().startswith('#'):
      continue
    pattern, _, reason = line.partition('#')
    if not pattern.strip() or not reason.strip():
      raise pytest.UsageError(f'allowed skips line {number}: write "<node id>  # <reason>", '
                              f'got {line!r}')
    entries.append(Allowed(pattern.strip(), reason.strip()))
  return entries


def is_allowed(nodeid: str, entries: List[Allowed]) -> bool:
  return any(nodeid == e.pattern or fnmatch.fnmatchcase(nodeid, e.pattern) for e in entries)


def skip_reason(report) -> str:
  """What pytest says about a skipped, xfailed or xpassed report."""
  if hasattr(report, 'wasxfail'):
    return f'{"xpass" if report.passed else "xfail"}: {report.wasxfail}'
  longrepr = report.longrepr
  if isinstance(longrepr, tuple) and len(longrepr) == 3:
    return longrepr[2]
  return str(longrepr)


def pytest_addoption(parser):
  parser.addoption(ALLOWLIST_OPTION, default=ALLOWLIST,
                   help='file of skips that do not fail the run (default: tests/allowed_skips.txt)')


class SkipCheck:
  """Collects skips during the run; fails the session on unlisted ones."""

  def __init__(self, entries: List[Allowed], path: str):
    self.entries = entries
    self.path = path
    self.unlisted: List[str] = []

  def _record(self, nodeid: str, reason: str) -> None:
    if not is_allowed(nodeid, self.entries):
      self.unlisted.append(f'{nodeid}: {reason}')

  def pytest_collectreport(self, report):
    if report.skipped:  # a module-level skip or importorskip
      self._record(report.nodeid, skip_reason(report))

  def pytest_runtest_logreport(self, report):
    if report.skipped or (report.when == 'call' and hasattr(report, 'wasxfail')):
      self._record(report.nodeid, skip_reason(report))

  @pytest.hookimpl(trylast=True)
  def pytest_sessionfinish(self, session):
    if self.unlisted and session.exitstatus in (pytest.ExitCode.OK,
                                                pytest.ExitCode.NO_TESTS_COLLECTED):
      session.exitstatus = pytest.ExitCode.TESTS_FAILED

  def pytest_terminal_summary(self, terminalreporter):
    if self.unlisted:
      terminalreporter.section('skips not on the allow-list (they fail the run)', red=True)
      for line in self.unlisted:
        terminalreporter.write_line(line)
      terminalreporter.write_line(
          f'Fix the cause, or list the test with its reason in {self.path}.')


def pytest_configure(config):
  path = config.getoption(ALLOWLIST_OPTION)
  with open(path) as f:
    entries = parse_allowlist(f.read())
  config.pluginmanager.register(SkipCheck(entries, path), 'skip_allowlist_check')
