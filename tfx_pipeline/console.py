"""The run's console: our lines and real warnings on screen, library noise in a log file.

A run's stderr carries far more than its warnings: TensorFlow's C++ logging
(CUDA plugins registering twice on a machine with no GPU, CPU-instruction
notices, a line at the end of every tf.data pass), a TFX warning for every
resolver query, deprecation notices. They bury the lines that matter. Much of
it is written by C++ straight to file descriptor 2, and by subprocesses that
inherit it (Beam workers, ServingCheck's loaders), so the filter works on the
descriptor, not on `sys.stderr`:

  start()       before anything imports TensorFlow: fd 2 becomes a pipe read by a
                filter process (this file, run as a script). Each line goes on to the
                real stderr unless it matches NOISE. The filter is a process of its
                own so that what a dying run writes last (a traceback, a C++ check
                failure, a segfault's dump) still reaches the console.
  attach_log()  once the pipeline root is checked: the filter writes every line,
                shown or not, to <root>/logs/run-<UTC time>.log (the lines since
                start() first), and Python logging goes there from INFO up. The
                console keeps WARNING and above, minus NOISE.
  stop()        gives fd 2 back and waits for the filter to drain the pipe.

stdout is left alone: progress lines, Keras' progress output and the summary
are written there. With verbose=True nothing is filtered (the log is still
written). At module level only the standard library is imported: the
filter process must start in milliseconds.
"""

import dataclasses
import datetime
import logging
import os
import re
import selectors
import signal
import subprocess
import sys
import traceback
from typing import List, Optional, Tuple

LOG_DIR = 'logs'  # under the pipeline root
KEEP_LOGS = 30  # a run deletes the oldest logs beyond these (a daily cron: a month)
_HELD_BYTES = 4 << 20  # stderr held in memory until the log file exists


@dataclasses.dataclass(frozen=True)
class Noise:
  pattern: str  # re.search'ed on a stderr line, and on the first line of a log message
  source: str  # where it comes from, and why it is not worth a reader's attention


# Known noise: each entry is a message this project's runs print on every run
# that says nothing about the run. Keep the patterns narrow (a whole message,
# not a word), so that a real error never matches. A line indented under a
# hidden line (a Python warning's source line, the node name under a C++
# status) is hidden with it. DEVELOPERS.md says how to add one.
NOISE: Tuple[Noise, ...] = (
    Noise(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: I |I\d{4} [\d:.]+ +\d+ )\S+\] ',
          "TensorFlow's C++ INFO lines (TSL and absl formats): 'Could not find cuda "
          "drivers', the CPU-instruction and oneDNN notices at import"),
    Noise(r'^To enable the following instructions: .*rebuild TensorFlow',
          "second line of cpu_feature_guard's INFO notice at import"),
    Noise(r'Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory for '
          r'plugin cu(DNN|FFT|BLAS) when one has already been registered',
          'an E line per CUDA plugin at `import tensorflow`: TF and XLA both register '
          'them; harmless with or without a GPU'),
    Noise(r'TF-TRT Warning: Could not find TensorRT',
          'TensorFlow at import: TensorRT is not installed and not used'),
    Noise(r'Local rendezvous is aborting with status: OUT_OF_RANGE: End of sequence',
          'TensorFlow C++ at the end of every tf.data pass (each epoch, each evaluation)'),
    Noise(r'^\S.*:\d+: (DeprecationWarning|PendingDeprecationWarning|FutureWarning): ',
          "Python's deprecation and future-version warnings from the libraries"),
    Noise(r'is deprecated and will be removed (in a future version|after )',
          "TensorFlow's deprecation notices ('From <file>: <function> (from <module>) is "
          "deprecated ...'), logged as warnings whenever a library calls an old API"),
    Noise(r'`custom_executor_spec` is deprecated\. Please customize component directly\.',
          "TFX, for the Pusher: it runs TFX's Pusher with our executor (components/pusher.py)"),
    Noise(r'^Instructions for updating:$',
          "second line of TensorFlow's deprecation notice"),
    Noise(r'(Artifact|Context)Query\.property_predicate is not supported\.',
          "TFX's channel resolver, for every input channel of every component"),
    Noise(r"Couldn't find python-snappy so the implementation of _TFRecordUtil",
          'Beam: an optional C extension for TFRecord checksums'),
    Noise(r'No semi_persistent_directory found: Functions defined in __main__ '
          r'\(interactive session\) may fail\.',
          'Beam, as each worker process starts (--beam-workers > 1): our functions live in '
          'modules, not __main__'),
    Noise(r"Discarding unparseable args: \[\\?'--pipeline_type_check\\?', "
          r"\\?'--direct_runner_use_stacked_bundle\\?'\]",
          "Beam, as each worker process starts: two DirectRunner options the worker's "
          'parser does not know'),
    Noise(r'Not using the in-place Transform because the following features require analyzing',
          'TFX Transform: preprocessing_fn analyzes the images (per-channel statistics), '
          'as designed'),
    Noise(r'calls to <function \S+\.(multi_step_on_iterator|one_step_on_data|'
          r'one_step_on_iterator)\b.* triggered tf\.function retracing',
          "Keras: the Tuner builds a new model per trial, and TensorFlow counts each new "
          "model's train step as a retrace"),
    Noise(r'Skipping variable loading for optimizer',
          "Keras, when Hyperband continues a trial: the previous round's weights are loaded "
          'into a model with a fresh optimizer'),
    Noise(r'^(INFO|DEBUG):[\w.]+:',
          "Python logging below WARNING from subprocesses (the runner's own goes to the "
          'log file directly)'),
)
_PATTERNS = tuple(re.compile(n.pattern) for n in NOISE)


def noise_of(line: str) -> Optional[Noise]:
  """The NOISE entry `line` matches, or None."""
  for noise, pattern in zip(NOISE, _PATTERNS):
    if pattern.search(line):
      return noise
  return None


class LineFilter:
  """Splits a byte stream into lines and says which reach the console.

  A line is one that ends in '\\n' or '\\r' (progress bars redraw with '\\r').
  A blank or indented line follows the decision on the line before it.
  """

  def __init__(self, verbose: bool = False):
    self._verbose = verbose
    self._partial = b''
    self._hiding = False

  def shown(self, line: str) -> bool:
    if self._verbose:
      return True
    if not line.strip() or line[0] in ' \t':
      return not self._hiding
    self._hiding = noise_of(line.rstrip('\r\n')) is not None
    return not self._hiding

  def feed(self, data: bytes) -> List[Tuple[bytes, bool]]:
    """(line, shown) for each line that `data` completes; the rest waits."""
    lines = re.split(rb'(?<=[\r\n])', self._partial + data)
    self._partial = lines.pop()
    return [(l, self.shown(l.decode('utf-8', 'replace'))) for l in lines if l]

  def flush(self) -> List[Tuple[bytes, bool]]:
    """The last, unterminated line (at the end of the stream)."""
    rest, self._partial = self._partial, b''
    return [(rest, self.shown(rest.decode('utf-8', 'replace')))] if rest else []


def shown_record(record: logging.LogRecord, verbose: bool = False) -> bool:
  """Whether a Python log record reaches the console (else only the log file)."""
  if verbose:
    return True
  if record.levelno < logging.WARNING:
    return False
  try:
    message = record.getMessage()
  except Exception:  # pylint: disable=broad-except  # bad %-args: logging reports it
    message = str(record.msg)
  return noise_of(message.split('\n', 1)[0]) is None


def log_path(pipeline_root: str, now: Optional[datetime.datetime] = None) -> str:
  """<root>/logs/run-<UTC time>.log"""
  now = now or datetime.datetime.now(datetime.timezone.utc)
  return os.path.join(pipeline_root, LOG_DIR, f'run-{now:%Y%m%dT%H%M%SZ}.log')


def prune_logs(folder: str, keep: int = KEEP_LOGS) -> List[str]:
  """Deletes the oldest run logs beyond `keep` (names sort by time); returns them."""
  logs = sorted(f for f in os.listdir(folder) if f.startswith('run-') and f.endswith('.log'))
  old = logs[:max(0, len(logs) - keep)]
  for name in old:
    os.remove(os.path.join(folder, name))
  return old


# ---------------------------------------------------------------- the runner's side


class _LogFileHandler(logging.FileHandler):
  """The log file's handler: a failed write (a full disk) warns once, not per record."""

  def __init__(self, path: str):
    super().__init__(path, encoding='utf-8')
    self.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
    self._failed = False

  def emit(self, record):
    if not self._failed:
      super().emit(record)

  def close(self):
    try:
      super().close()
    except OSError:  # what the full disk did not take at emit, it does not take now
      pass

  def handleError(self, record):
    error = sys.exc_info()[1]
    if isinstance(error, OSError) and not self._failed:
      self._failed = True
      print(f'warning: the run log is no longer written: {error}', file=sys.stderr)
    elif not isinstance(error, OSError):
      super().handleError(record)


@dataclasses.dataclass
class _Session:
  verbose: bool
  real_stderr: int  # a dup of the fd 2 we replaced
  control: int  # write end of the filter's control pipe (the log path goes through it)
  filter: subprocess.Popen
  log: Optional[str] = None
  handlers: List[Tuple[logging.Logger, logging.Handler]] = dataclasses.field(
      default_factory=list)  # ours, removed at stop
  removed: List[Tuple[logging.Logger, logging.Handler]] = dataclasses.field(
      default_factory=list)  # the libraries' stderr handlers, put back at stop
  root_level: int = logging.WARNING
  absl_verbosity: Optional[int] = None  # put back at stop


_session: Optional[_Session] = None


def start(verbose: bool = False) -> None:
  """Sends fd 2 through the filter process. Call before TensorFlow is imported."""
  global _session
  if _session is not None:
    return
  sys.stderr.flush()
  argv = [sys.executable, '-I', os.path.abspath(__file__), '--control-fd']
  try:
    real = os.dup(2)
  except OSError:  # stderr closed (2>&-): nothing to filter
    return
  data_r, data_w = os.pipe()
  control_r, control_w = os.pipe()
  try:
    process = subprocess.Popen(
        argv + [str(control_r)] + (['--verbose'] if verbose else []), stdin=data_r,
        stdout=real, stderr=real, pass_fds=(control_r,))
  except OSError:  # no interpreter to start: an unfiltered console beats no run
    for fd in (real, data_r, data_w, control_r, control_w):
      os.close(fd)
    return
  os.close(data_r)
  os.close(control_r)
  os.dup2(data_w, 2)  # inheritable: Beam workers and other subprocesses write here too
  os.close(data_w)
  _session = _Session(verbose, real, control_w, process)


def attach_log(pipeline_root: str) -> Optional[str]:
  """Starts the run's log file under `pipeline_root` and routes Python logging; its path.

  None when start() was not called or the root is not a local path (a gs:// root:
  the console is filtered all the same, and --verbose shows everything).
  """
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  from components import progress  # pylint: disable=g-import-not-at-top
  session = _session
  if session is None or '://' in pipeline_root:
    return None
  path = log_path(pipeline_root)
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    prune_logs(os.path.dirname(path), KEEP_LOGS - 1)  # and this run's makes KEEP_LOGS
    file_handler = _LogFileHandler(path)
    progress_handler = _LogFileHandler(path)  # stdout's lines, all of them
  except OSError as e:  # e.g. a full disk: the run goes on (and says what it can)
    print(f'warning: no run log: {e}', file=sys.stderr)
    return None
  file_handler.addFilter(lambda r: not shown_record(r, session.verbose))  # shown: via fd 2
  console_handler = logging.StreamHandler(sys.stderr)
  console_handler.setFormatter(logging.Formatter('%(levelname)s:%(name)s:%(message)s'))
  console_handler.addFilter(lambda r: shown_record(r, session.verbose))
  os.write(session.control, (path + '\n').encode())  # the filter appends from here on

  root = logging.getLogger()
  session.root_level = root.level
  for logger in [root] + [l for l in logging.Logger.manager.loggerDict.values()
                          if isinstance(l, logging.Logger)]:
    for handler in list(logger.handlers):
      if (type(handler) is logging.StreamHandler  # pylint: disable=unidiomatic-typecheck
          and handler.stream in (sys.stderr, sys.__stderr__)):
        logger.removeHandler(handler)  # e.g. TensorFlow's own, which would print twice
        session.removed.append((logger, handler))
  root.setLevel(logging.INFO)
  # absl's logger follows the root's level until its verbosity is set. TensorFlow sets it
  # around every SavedModel write (to FATAL and back to the flag's value, by default
  # WARNING), after which absl's INFO lines (TFX's and the Trainer's) were lost from
  # Transform on. With an explicit INFO, that is the value it goes back to.
  session.absl_verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  # Our progress logger does not propagate (it prints on stdout); the log keeps its lines.
  for logger, handler in ((root, file_handler), (root, console_handler),
                          (progress.LOGGER, progress_handler)):
    logger.addHandler(handler)
    session.handlers.append((logger, handler))
  logging.captureWarnings(True)
  session.log = path
  logging.getLogger(__name__).info('run log of: %s', ' '.join([sys.executable] + sys.argv))
  return path


def stop(timeout: float = 10.0) -> None:
  """Puts fd 2 and logging back; waits for the filter to write out what it holds.

  Called in a `finally:` while an exception propagates, it adds the traceback to
  the log (Python prints it on the console once stderr is back).
  """
  global _session
  session, _session = _session, None
  if session is None:
    return
  error = sys.exc_info()[1]
  logging.captureWarnings(False)
  for logger, handler in session.handlers:
    logger.removeHandler(handler)
    handler.close()
  for logger, handler in session.removed:
    logger.addHandler(handler)
  if session.handlers:
    logging.getLogger().setLevel(session.root_level)
  if session.absl_verbosity is not None:
    from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
    absl_logging.set_verbosity(session.absl_verbosity)
  try:
    sys.stderr.flush()
  except (OSError, ValueError):
    pass
  os.dup2(session.real_stderr, 2)  # closes our end of the pipe: the filter sees EOF
  os.close(session.real_stderr)
  os.close(session.control)
  try:
    session.filter.wait(timeout)
  except subprocess.TimeoutExpired:
    pass  # a subprocess still holds the pipe; the filter ends when it does
  if session.log and error is not None and not isinstance(error, SystemExit):
    with open(session.log, 'a', encoding='utf-8') as log:
      log.writelines(traceback.format_exception(type(error), error, error.__traceback__))
    print(f'the run log, with the libraries\' messages: {session.log}', file=sys.stderr)


def current_log() -> Optional[str]:
  return _session.log if _session else None


# ---------------------------------------------------------------- the filter process


def _run_filter(control_fd: int, verbose: bool) -> None:
  """stdin: the run's fd 2; stdout: the real stderr; control_fd: the log path, once."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: drain the dying run's last words
  line_filter = LineFilter(verbose)
  state = {'log': None, 'held': [], 'held_bytes': 0, 'console': True}

  def to_console(data: bytes) -> None:
    try:
      while data and state['console']:
        data = data[os.write(1, data):]
    except OSError:  # the console is gone (a closed pipe): keep the log going
      state['console'] = False

  def to_log(lines: List[bytes]) -> None:
    if state['log'] is None:  # not attached yet: hold (bounded)
      if state['held_bytes'] < _HELD_BYTES:
        state['held'].extend(lines)
        state['held_bytes'] += sum(map(len, lines))
      return
    try:
      state['log'].writelines(lines)
      state['log'].flush()
    except OSError as e:  # e.g. a full disk: the console still gets what it should
      state['held_bytes'] = _HELD_BYTES
      state['log'] = None
      to_console(f'warning: the run log is no longer written: {e}\n'.encode())

  def write(lines: List[Tuple[bytes, bool]]) -> None:
    to_console(b''.join(line for line, shown in lines if shown))
    to_log([line for line, _ in lines])

  def attach(path: str) -> None:
    try:
      state['log'] = open(path, 'ab')  # pylint: disable=consider-using-with
    except OSError as e:
      to_console(f'warning: the run log {path} cannot be written: {e}\n'.encode())
      state['held_bytes'] = _HELD_BYTES
    else:
      to_log(state['held'])
    state['held'] = []

  def pump() -> None:
    control = b''
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(control_fd, selectors.EVENT_READ)
    while 0 in selector.get_map():
      for key, _ in selector.select():
        data = os.read(key.fd, 1 << 16)
        if key.fd == control_fd:
          control += data
          if not data or b'\n' in control:
            selector.unregister(control_fd)
            if control.strip():
              attach(control.split(b'\n')[0].decode())
            else:
              state['held'], state['held_bytes'] = [], _HELD_BYTES  # no log for this run
        elif data:
          write(line_filter.feed(data))
        else:
          write(line_filter.flush())
          selector.unregister(0)

  try:
    pump()
  except Exception:  # pylint: disable=broad-except  # a bug here must not cost the run its stderr
    to_console(traceback.format_exc().encode())
    for data in iter(lambda: os.read(0, 1 << 16), b''):
      to_console(data)  # the rest, unfiltered
  if state['log'] is not None:
    state['log'].close()


if __name__ == '__main__':
  _args = sys.argv[1:]
  _run_filter(int(_args[_args.index('--control-fd') + 1]), '--verbose' in _args)
