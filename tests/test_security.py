"""Nothing in the project unpickles files: a static guard over every project source.

Pickle-style loaders run code from the file they read. The project reads
images (decoded by TF), TFRecords, JSON and SavedModels only; this test fails
as soon as a module imports a pickle-family loader or asks a loader to allow
pickles, so such a change has to be argued for in review.
"""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('components', 'models', 'tuning', 'tfx_pipeline', 'serving', 'benchmarks')
BANNED_MODULES = {'pickle', 'cPickle', 'dill', 'cloudpickle', 'marshal', 'shelve', 'joblib'}
BANNED_KEYWORDS = {('allow_pickle', True), ('safe_mode', False)}


def project_sources():
  yield os.path.join(REPO, 'pipeline_runner.py')
  for package in PACKAGES:
    for dirpath, _, filenames in os.walk(os.path.join(REPO, package)):
      for name in filenames:
        if name.endswith('.py'):
          yield os.path.join(dirpath, name)


def findings(path):
  tree = ast.parse(open(path).read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name.split('.')[0] for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      names = [(node.module or '').split('.')[0]]
    else:
      names = []
    for name in names:
      if name in BANNED_MODULES:
        yield f'{path}:{node.lineno} imports {name}'
    if isinstance(node, ast.Call):
      for kw in node.keywords:
        if isinstance(kw.value, ast.Constant) and (kw.arg, kw.value.value) in BANNED_KEYWORDS:
          yield f'{path}:{node.lineno} passes {kw.arg}={kw.value.value}'
      func = node.func
      if isinstance(func, ast.Attribute) and func.attr == 'load' and \
          isinstance(func.value, ast.Name) and func.value.id == 'yaml':
        yield f'{path}:{node.lineno} calls yaml.load'


def test_no_pickle_family_loaders_in_project_code():
  sources = list(project_sources())
  assert len(sources) > 15  # the scan really sees the project
  assert [f for path in sources for f in findings(path)] == []


def test_the_guard_catches_what_it_claims(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('import pickle\nfrom dill import loads\nimport numpy as np\n'
                 'np.load("x.npy", allow_pickle=True)\nimport yaml\nyaml.load(s)\n')
  assert len(list(findings(str(bad)))) == 4
