"""tests/skip_allowlist.py: an unlisted skip of any kind makes pytest exit 1."""

import os
import subprocess
import sys

import pytest

import skip_allowlist

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

# One file per kind of skip; each would let a run pass while guarding nothing.
CASES = {
    'test_skip.py': 'def test_it():\n  pytest.skip("no network")\n',
    'test_skipif.py': '@pytest.mark.skipif(True, reason="not on this host")\n'
                      'def test_it():\n  pass\n',
    'test_xfail.py': '@pytest.mark.xfail(reason="known bug")\ndef test_it():\n  assert False\n',
    'test_xpass.py': '@pytest.mark.xfail(reason="known bug")\ndef test_it():\n  pass\n',
    'test_importorskip.py': 'def test_it():\n  pytest.importorskip("no_such_package_xyz")\n',
    'test_module_importorskip.py': 'pytest.importorskip("no_such_package_xyz")\n'
                                   'def test_it():\n  pass\n',
    'test_module_skip.py': 'pytest.skip("whole module", allow_module_level=True)\n'
                           'def test_it():\n  pass\n',
    'test_fixture_skip.py': '@pytest.fixture\ndef needs():\n  pytest.skip("no GPU")\n'
                            'def test_it(needs):\n  pass\n',
}
PASSING = {'test_ok.py': 'def test_it():\n  pass\n'}


def run_pytest(tmp_path, files, allowlist=''):
  """pytest on `files` ({name: body}) with only this plugin: (exit status, output)."""
  (tmp_path / 'pytest.ini').write_text('[pytest]\n')
  for name, body in files.items():
    (tmp_path / name).write_text('import pytest\n' + body)
  (tmp_path / 'allowed.txt').write_text(allowlist)
  done = subprocess.run(
      [sys.executable, '-m', 'pytest', '-p', 'skip_allowlist', '-p', 'no:cacheprovider',
       '--allowed-skips', str(tmp_path / 'allowed.txt'), *sorted(files)],
      cwd=tmp_path, env=dict(os.environ, PYTHONPATH=TESTS_DIR),
      capture_output=True, text=True, timeout=300)
  return done.returncode, done.stdout + done.stderr


def unlisted(out):
  """Node ids in the plugin's summary section."""
  section = out.split('skips not on the allow-list', 1)[1] if 'allow-list' in out else ''
  return {line.split(':')[0].split('::')[0] for line in section.splitlines()[1:]
          if line.startswith('test_')}


def test_every_kind_of_unlisted_skip_fails_the_run_and_is_named(tmp_path):
  code, out = run_pytest(tmp_path, {**PASSING, **CASES})
  assert code == 1, out
  assert unlisted(out) == set(CASES), out


def test_listed_skips_pass_by_node_id_or_pattern(tmp_path):
  files = {**PASSING, 'test_skip.py': CASES['test_skip.py'],
           'test_xfail.py': CASES['test_xfail.py']}
  code, out = run_pytest(tmp_path, files, 'test_skip.py::test_it  # needs the network\n'
                                          'test_xf*  # a known bug in a dependency\n')
  assert code == 0, out


def test_a_run_without_skips_passes_and_a_failure_keeps_its_status(tmp_path):
  code, out = run_pytest(tmp_path, PASSING)
  assert code == 0, out
  code, out = run_pytest(tmp_path, {'test_fails.py': 'def test_it():\n  assert False\n'})
  assert code == 1 and not unlisted(out), out


def test_an_entry_without_a_reason_is_a_usage_error():
  with pytest.raises(pytest.UsageError, match='reason'):
    skip_allowlist.parse_allowlist('tests/test_x.py::test_y\n')
  assert skip_allowlist.parse_allowlist('# comment\n\na::b  # why\n') == [
      skip_allowlist.Allowed('a::b', 'why')]


def test_the_repository_allowlist_names_only_existing_test_files():
  with open(skip_allowlist.ALLOWLIST) as f:
    entries = skip_allowlist.parse_allowlist(f.read())
  root = os.path.dirname(TESTS_DIR)
  for entry in entries:  # a stale entry would silently allow a future skip
    path = entry.pattern.split('::')[0]
    assert '*' in path or os.path.isfile(os.path.join(root, path)), entry


def test_this_suite_runs_with_the_check(request):
  assert request.config.pluginmanager.get_plugin('skip_allowlist_check') is not None
