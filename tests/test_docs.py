"""README.md and docs/*.md say only what runs: every code block is checked by its label.

The convention (DEVELOPERS.md, "Docs that run"): every code block is fenced
and labelled. `python` blocks compile; `sh` blocks are valid bash, every
`pipeline_runner.py` or `make` command in them passes the runner's own
parser and config checks, and every file they write goes to a folder that
exists or that the block creates first; in `console` blocks the `$ ` lines
are checked as `sh`. `text` (output, layouts, excerpts) and `dockerfile`
blocks are not run, and the label says so.
"""

import dataclasses
import glob
import io
import json
import os
import re
import shlex
import subprocess
import sys
from contextlib import redirect_stderr
from typing import Dict, Iterator, List, NamedTuple, Tuple

import pytest
from markdown_it import MarkdownIt

import pipeline_runner
from tfx_pipeline import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ['README.md'] + sorted(os.path.relpath(p, REPO)
                              for p in glob.glob(os.path.join(REPO, 'docs', '*.md')))
CHECKED = ('python', 'sh', 'console')
NOT_RUN = ('text', 'dockerfile')


class Block(NamedTuple):
  path: str  # relative to the repository
  line: int  # 1-based line of the opening fence
  label: str  # the fence's info string ('' for an indented block)
  text: str

  @property
  def where(self) -> str:
    return f'{self.path}:{self.line}'


def code_blocks(path: str) -> List[Block]:
  """Every fenced or indented code block of a Markdown file, as CommonMark sees it."""
  with open(os.path.join(REPO, path)) as f:
    tokens = MarkdownIt('commonmark').parse(f.read())
  return [Block(path, t.map[0] + 1, t.info.strip() if t.type == 'fence' else '', t.content)
          for t in tokens if t.type in ('fence', 'code_block')]


ALL_BLOCKS = [b for path in DOCS for b in code_blocks(path)]


def blocks(*labels: str) -> List[Block]:
  return [b for b in ALL_BLOCKS if b.label in labels]


def ids(items: List[Block]) -> List[str]:
  return [b.where for b in items]


# --- shell blocks as commands ---------------------------------------------

def logical_lines(text: str) -> Iterator[str]:
  """Lines with backslash continuations joined and quoted newlines kept inside."""
  pending = ''
  for line in text.splitlines():
    if line.rstrip().endswith('\\'):
      pending += line.rstrip()[:-1] + ' '
      continue
    pending += line
    try:
      shlex.split(pending, comments=True)
    except ValueError:  # a quote spans lines
      pending += '\n'
      continue
    yield pending
    pending = ''
  if pending.strip():
    yield pending


def console_commands(text: str) -> str:
  """The `$ ` lines of a console transcript (and their continuations), as a script."""
  script, continued = [], False
  for line in text.splitlines():
    if line.startswith('$ ') or continued:
      script.append(line[2:] if line.startswith('$ ') else line)
      continued = line.rstrip().endswith('\\')
  return '\n'.join(script)


def expand(text: str, env: Dict[str, str]) -> str:
  """$NAME and ${NAME} replaced by what the block assigned; others stay as written."""
  return re.sub(r'\$\{?(\w+)\}?', lambda m: env.get(m.group(1), m.group(0)), text)


SEPARATORS = {'|', '||', '&&', ';', '&', 'do', 'then', 'done', 'fi'}


def commands(script: str) -> List[List[str]]:
  """Each simple command of a script as words, variables expanded as the script sets them.

  Follows `NAME=value` lines and the first value of `for NAME in a b; do` loops.
  """
  env: Dict[str, str] = {}
  result = []
  for line in logical_lines(script):
    loop = re.match(r'\s*for (\w+) in (\S+)', line)
    if loop:
      env[loop.group(1)] = loop.group(2).rstrip(';')
      continue
    words = shlex.split(expand(line, env), comments=True)
    if words and all(re.match(r'\w+=', w) for w in words):
      for w in words:
        name, _, value = w.partition('=')
        env[name] = value
      continue
    current: List[str] = []
    for word in words + [';']:
      bare = word.rstrip(';')
      if bare and bare not in SEPARATORS:
        current.append(bare)
      if word in SEPARATORS or word.endswith(';'):
        if current:
          result.append(current)
        current = []
  return result


def program(words: List[str]) -> List[str]:
  """The command without leading VAR=value environment settings."""
  i = 0
  while i < len(words) and re.match(r'\w+=', words[i]):
    i += 1
  return words[i:]


def is_redirect(word: str) -> bool:
  return re.fullmatch(r'\d*>>?(&\d+)?', word) is not None


def runner_argv(words: List[str]) -> List[List[str]]:
  """The flags given to pipeline_runner.py, directly or through `make run ARGS=...`."""
  words = program(words)
  for i, word in enumerate(words):
    if word.endswith('pipeline_runner.py'):
      argv = []
      for w in words[i + 1:]:
        if is_redirect(w):
          break
        argv.append(w)
      return [argv]
  if words[:2] == ['make', 'run']:
    args = [w.partition('=')[2] for w in words[2:] if w.startswith('ARGS=')]
    return [shlex.split(args[-1]) if args else []]
  return []


def written_files(words: List[str]) -> List[str]:
  """Files a command writes through `tee` or a `>`/`>>` redirection."""
  files = []
  words = program(words)
  if words and words[0] == 'tee':
    files += [w for w in words[1:] if not w.startswith('-')]
  for i, word in enumerate(words[:-1]):
    if word in ('>', '>>'):
      files.append(words[i + 1])
  return files


def created_dirs(words: List[str]) -> List[str]:
  words = program(words)
  return [w for w in words[1:] if not w.startswith('-')] if words[:1] == ['mkdir'] else []


def make_targets() -> List[str]:
  with open(os.path.join(REPO, 'Makefile')) as f:
    return re.findall(r'^([\w-]+):', f.read(), flags=re.MULTILINE)


def shell_scripts() -> List[Tuple[Block, str]]:
  return [(b, b.text) for b in blocks('sh')] + [(b, console_commands(b.text))
                                                 for b in blocks('console')]


SCRIPTS = shell_scripts()
RUNNER_CALLS = [(b, argv) for b, script in SCRIPTS for words in commands(script)
                for argv in runner_argv(words)]


def parse(argv: List[str]) -> config_lib.PipelineConfig:
  """argv through the runner's parser and its config checks, as `main` does before running."""
  err = io.StringIO()
  with redirect_stderr(err):
    try:
      args = pipeline_runner.build_parser().parse_args(argv)
    except SystemExit:
      pytest.fail(err.getvalue().strip())
  try:
    return pipeline_runner.configure(args, args.preset or 'cpu')
  except config_lib.ConfigError as e:
    pytest.fail(f'error: {e}')


# --- tests ------------------------------------------------------------------

def test_every_code_block_is_fenced_and_labelled():
  unlabelled = [f'{b.where}: {b.label or "indented, no label"}' for b in ALL_BLOCKS
                if b.label not in CHECKED + NOT_RUN]
  assert not unlabelled, ('label each block ' + ', '.join(CHECKED + NOT_RUN)
                          + ' (DEVELOPERS.md, "Docs that run"): ' + '; '.join(unlabelled))


def test_the_docs_have_blocks_of_every_checked_kind():
  assert blocks('python') and blocks('sh') and RUNNER_CALLS


@pytest.mark.parametrize('block', blocks('python'), ids=ids(blocks('python')))
def test_python_blocks_compile(block):
  compile(block.text, block.where, 'exec')


@pytest.mark.parametrize('block, script', SCRIPTS, ids=[b.where for b, _ in SCRIPTS])
def test_shell_blocks_are_valid_bash(block, script):
  done = subprocess.run(['bash', '-n'], input=script, capture_output=True, text=True)
  assert done.returncode == 0, f'{block.where}: {done.stderr}'


@pytest.mark.parametrize('block, argv', RUNNER_CALLS, ids=[b.where for b, _ in RUNNER_CALLS])
def test_runner_commands_use_flags_and_values_the_runner_accepts(block, argv):
  parse(argv)


@pytest.mark.parametrize('block, script', SCRIPTS, ids=[b.where for b, _ in SCRIPTS])
def test_make_commands_name_makefile_targets(block, script):
  targets = make_targets()
  for words in commands(script):
    words = program(words)
    if words[:1] == ['make']:
      named = [w for w in words[1:] if '=' not in w and not w.startswith('-')]
      assert named and all(t in targets for t in named), f'{block.where}: {words}'


@pytest.mark.parametrize('block, script', SCRIPTS, ids=[b.where for b, _ in SCRIPTS])
def test_files_are_written_into_folders_the_block_creates_first(block, script):
  made: List[str] = []
  for words in commands(script):
    for path in written_files(words):
      folder = os.path.dirname(path)
      assert not folder or any(folder == d or folder.startswith(d.rstrip('/') + '/')
                               for d in made), \
          f'{block.where}: {" ".join(words)} writes into {folder}, which nothing created yet'
    made += created_dirs(words)


# --- the parser of commands, on the mistakes it must catch --------------------

def test_commands_follow_continuations_variables_and_loops():
  script = ('OUT=/tmp/x   # a comment\n'
            'for W in 1 2; do\n'
            '  TF_ENABLE_ONEDNN_OPTS=1 .venv/bin/python pipeline_runner.py --beam-workers $W \\\n'
            '      --pipeline-root "$OUT/w$W" 2>&1 | tee $OUT/w$W.log\n'
            'done\n'
            'make run ARGS="--preset smoke --epochs 3"\n')
  found = [argv for words in commands(script) for argv in runner_argv(words)]
  assert found == [['--beam-workers', '1', '--pipeline-root', '/tmp/x/w1'],
                   ['--preset', 'smoke', '--epochs', '3']]
  assert [f for w in commands(script) for f in written_files(w)] == ['/tmp/x/w1.log']


def test_a_tee_before_its_mkdir_is_caught():
  late = 'OUT=/tmp/b\npython pipeline_runner.py 2>&1 | tee $OUT/w.log\nmkdir -p $OUT\n'
  with pytest.raises(AssertionError, match='nothing created yet'):
    test_files_are_written_into_folders_the_block_creates_first(Block('x.md', 1, 'sh', late),
                                                                late)


@pytest.mark.parametrize('argv', [['--epoch', '3'], ['--beam-workers', '$W'],
                                  ['--preset', 'smoke', '--epochs', '0']])
def test_a_bad_runner_command_fails_the_docs_test(argv):
  with pytest.raises(pytest.fail.Exception, match='error: '):
    parse(argv)


# --- what particular passages promise ------------------------------------------

def block_containing(path: str, needle: str) -> Block:
  found = [b for b in code_blocks(path) if needle in b.text]
  assert len(found) == 1, f'{path}: {len(found)} blocks contain {needle!r}'
  return found[0]


def test_vertex_tuner_snippet_works_where_the_stock_tuner_is_built(monkeypatch, tmp_path):
  """docs/scale_out.md's Vertex Tuner, run in create_pipeline's scope in place of the stock one."""
  from tfx import v1 as tfx
  from tfx_pipeline import pipeline as pipeline_lib
  snippet = block_containing('docs/scale_out.md', 'google_cloud_ai_platform.Tuner(')
  stock_tuner = tfx.components.Tuner
  made = {}

  def tuner_in_its_place(**kwargs):
    scope = {**vars(pipeline_lib), **sys._getframe(1).f_locals}  # create_pipeline's names
    exec(compile(snippet.text, snippet.where, 'exec'), scope)  # pylint: disable=exec-used
    made.update(vertex=scope['tuner'], settings=scope['settings'])
    made['stock'] = stock_tuner(**kwargs)
    return made['stock']
  monkeypatch.setattr(tfx.components, 'Tuner', tuner_in_its_place)
  config = dataclasses.replace(config_lib.smoke(), pipeline_root=str(tmp_path / 'root'),
                               data=config_lib.DataConfig(image_dir=str(tmp_path)))
  pipeline_lib.create_pipeline(config)

  vertex, stock = made['vertex'], made['stock']
  assert vertex.id == stock.id == 'Tuner'
  assert vertex.exec_properties['tuner_fn'] == stock.exec_properties['tuner_fn']
  assert set(vertex.inputs) == set(stock.inputs)
  custom = vertex.exec_properties['custom_config']
  custom = json.loads(custom) if isinstance(custom, str) else custom
  from tfx.extensions.google_cloud_ai_platform import constants
  assert custom[constants.ENABLE_VERTEX_KEY] is True
  # tuner_fn reads the model, train and tune sections and the tuner dir from `settings`.
  assert {k: custom[k] for k in made['settings']} == json.loads(json.dumps(made['settings']))
  assert {'model', 'train', 'tune', 'tuner_dir'} <= set(made['settings'])


def test_readme_names_every_place_a_run_writes(tmp_path):
  """The README's sentence on where a run writes names each of pipeline_runner.written_dirs."""
  with open(os.path.join(REPO, 'README.md')) as f:
    paragraphs = [' '.join(p.split()) for p in f.read().split('\n\n')]
  claim = [p for p in paragraphs if 'Nothing else is written' in p]
  assert len(claim) == 1
  tfds_route = config_lib.cpu()
  folder_route = dataclasses.replace(tfds_route,
                                     data=config_lib.DataConfig(image_dir=str(tmp_path)))
  for config in (tfds_route, folder_route):
    for flag, _ in pipeline_runner.written_dirs(config):
      assert flag in claim[0], flag
  assert '~/tensorflow_datasets' in claim[0]
