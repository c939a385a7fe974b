"""tfx_pipeline/console.py: library noise to the run's log, warnings and errors to the console."""

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from tfx_pipeline import console

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lines a smoke run printed on stderr before the filter (2026-11-30, TF 2.16.2 CPU build,
# TFX 1.16), one or more per NOISE entry; the I0000/E0000 lines are the same messages in
# the absl format of newer TensorFlow builds.
NOISE_SEEN = [
    '2026-11-30 02:57:15.261812: I external/local_tsl/tsl/cuda/cudart_stub.cc:32] Could not '
    'find cuda drivers on your machine, GPU will not be used.',
    '2026-11-30 02:57:15.440512: I tensorflow/core/platform/cpu_feature_guard.cc:210] This '
    'TensorFlow binary is optimized to use available CPU instructions in performance-critical '
    'operations.',
    'To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow '
    'with the appropriate compiler flags.',
    'I0000 00:00:1732704040.417281   10815 port.cc:153] oneDNN custom operations are on.',
    '2026-11-30 02:57:15.315869: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479] '
    'Unable to register cuFFT factory: Attempting to register factory for plugin cuFFT when one '
    'has already been registered',
    '2026-11-30 02:57:15.382235: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:10575]'
    ' Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN when one '
    'has already been registered',
    'E0000 00:00:1732704040.123456   10815 cuda_blas.cc:1418] Unable to register cuBLAS factory: '
    'Attempting to register factory for plugin cuBLAS when one has already been registered',
    '2026-11-30 02:57:18.496314: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] TF-TRT '
    'Warning: Could not find TensorRT',
    '2026-11-30 02:58:37.295448: W tensorflow/core/framework/local_rendezvous.cc:404] Local '
    'rendezvous is aborting with status: OUT_OF_RANGE: End of sequence',
    '/work/main/.venv/lib/python3.10/site-packages/google/api_core/_python_version_support.py:246:'
    ' FutureWarning: You are using a non-supported Python version (3.10.13).',
    'WARNING:absl:`custom_executor_spec` is deprecated. Please customize component directly.',
    'WARNING:tensorflow:From /x/tfx_bsl/tfxio/tf_example_record.py:343: parse_example_dataset '
    '(from tensorflow.python.data.experimental.ops.parsing_ops) is deprecated and will be '
    'removed in a future version.',
    'Instructions for updating:',
    'WARNING:absl:ArtifactQuery.property_predicate is not supported.',
    "WARNING:apache_beam.io.tfrecordio:Couldn't find python-snappy so the implementation of "
    '_TFRecordUtil._masked_crc32c is not as fast as it could be.',
    "WARNING:absl:Not using the in-place Transform because the following features require "
    "analyzing: ('image',)",
    'WARNING:tensorflow:5 out of the last 9 calls to <function TensorFlowTrainer._make_function.'
    '<locals>.multi_step_on_iterator at 0x7f4cfe4e5fc0> triggered tf.function retracing. '
    'Tracing is expensive',
    "/x/keras/src/saving/saving_lib.py:868: UserWarning: Skipping variable loading for optimizer"
    " 'SGD', because it has 1 variables whereas the saved optimizer has 24 variables.",
    'INFO:apache_beam.runners.worker.statecache:Creating state cache with size 104857600',
    # --beam-workers 2: the workers' warnings, relayed by Beam's job service
    'WARNING:apache_beam.runners.portability.local_job_service:Worker: severity: WARN timestamp'
    ' {   seconds: 1796017510   nanos: 201948881 } message: "No semi_persistent_directory '
    'found: Functions defined in __main__ (interactive session) may fail." log_location: '
    '"/x/apache_beam/runners/worker/sdk_worker_main.py:361" thread: "MainThread" ',
    'WARNING:apache_beam.runners.portability.local_job_service:Worker: severity: WARN timestamp'
    ' {   seconds: 1796017510   nanos: 236159801 } message: "Discarding unparseable args: '
    "[\\'--pipeline_type_check\\', \\'--direct_runner_use_stacked_bundle\\']\" log_location: "
    '"/x/apache_beam/options/pipeline_options.py:386" thread: "MainThread" ',
]

# What a reader must see: none of these may ever match NOISE.
REAL = [
    'Traceback (most recent call last):',
    'RuntimeError: the pipeline crashed',
    'error: the pipeline failed: RuntimeError: Trainer: checkpoint not written',
    'OSError: [Errno 28] No space left on device',
    '2026-11-30 03:00:00.000000: E tensorflow/core/framework/op_kernel.cc:1827] OP_REQUIRES '
    'failed at decode_image_op.cc:403 : INVALID_ARGUMENT: image of 16000x16000 pixels exceeds '
    'the limit',
    '2026-11-30 03:00:00.000000: W tensorflow/core/framework/local_rendezvous.cc:404] Local '
    'rendezvous is aborting with status: CANCELLED: Cancelled',
    '2026-11-30 03:00:00.000000: F tensorflow/core/framework/tensor.cc:850] Check failed: '
    'dtype() == expected_dtype',
    'E0000 00:00:1732704040.123456   10815 cuda_executor.cc:1015] failed call to cuInit: '
    'UNKNOWN ERROR (303)',
    'WARNING:absl:Examples artifact does not have payload_format custom property.',
    '/x/keras/src/trainers/epoch_iterator.py:164: UserWarning: Your input ran out of data; '
    'interrupting training.',
    'Fatal Python error: Segmentation fault',
    'warning: report.html not written: OSError: disk full',
]


@pytest.mark.parametrize('line', NOISE_SEEN)
def test_every_line_seen_as_noise_matches_an_entry(line):
  assert console.noise_of(line) is not None, line


def test_every_noise_entry_has_a_line_it_was_written_for():
  used = {console.noise_of(line) for line in NOISE_SEEN}
  assert [n.pattern for n in console.NOISE if n not in used] == []


@pytest.mark.parametrize('line', REAL)
def test_real_warnings_and_errors_are_not_noise(line):
  assert console.noise_of(line) is None, console.noise_of(line)


def decisions(chunks, verbose=False):
  line_filter = console.LineFilter(verbose)
  out = [d for chunk in chunks for d in line_filter.feed(chunk)] + line_filter.flush()
  return [(line.decode(), shown) for line, shown in out]


def test_an_indented_line_goes_with_the_line_above_it():
  text = (f'{NOISE_SEEN[8]}\n\t [[{{{{node IteratorGetNext}}}}]]\n'
          'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
          'ValueError: bad\n'
          f'{NOISE_SEEN[9]}\n  warnings.warn(message, FutureWarning)\n\n'
          'E x.cc:1] a real error\n  with detail')
  # Chunk boundaries fall anywhere (here: every 7 bytes); the last line has no newline.
  data = text.encode()
  got = decisions([data[i:i + 7] for i in range(0, len(data), 7)])
  assert ''.join(line for line, _ in got) == text  # nothing lost, nothing added
  assert [shown for _, shown in got] == [False, False, True, True, True, False, False, False,
                                         True, True]
  assert all(shown for _, shown in decisions([data], verbose=True))


def test_carriage_returns_end_a_line_so_progress_bars_redraw():
  got = decisions([b'\r 10%|#    |\r 50%|###  |\r100%|#####|\n'])
  assert [line for line, _ in got] == ['\r', ' 10%|#    |\r', ' 50%|###  |\r', '100%|#####|\n']
  assert all(shown for _, shown in got)


def record(name, level, msg, *args):
  return logging.LogRecord(name, level, 'x.py', 1, msg, args, None)


def test_log_records_reach_the_console_from_warning_up_minus_noise():
  deprecation = ('From /x/metrics_plots_and_validations_writer.py:112: tf_record_iterator '
                 '(from tensorflow.python.lib.io.tf_record) is deprecated and will be removed in '
                 'a future version.\nInstructions for updating:\nUse eager execution and: \n'
                 '`tf.data.TFRecordDataset(path)`')
  assert not console.shown_record(record('tensorflow', logging.WARNING, deprecation))
  assert not console.shown_record(record('absl', logging.WARNING, '%s.property_predicate is '
                                         'not supported.', 'ArtifactQuery'))
  assert not console.shown_record(record('absl', logging.INFO, 'Running driver for Trainer'))
  assert console.shown_record(record('absl', logging.WARNING, 'Examples artifact has no span'))
  assert console.shown_record(record('root', logging.ERROR, 'Trainer failed'))
  assert console.shown_record(record('absl', logging.INFO, 'Running driver'), verbose=True)


def test_old_logs_are_pruned_and_names_sort_by_time(tmp_path):
  import datetime
  names = [os.path.basename(console.log_path(str(tmp_path), datetime.datetime(2026, 11, d, 9)))
           for d in (3, 1, 2)]
  for name in names + ['notes.txt']:
    (tmp_path / name).write_text('x')
  assert console.prune_logs(str(tmp_path), keep=2) == ['run-20261101T090000Z.log']
  assert sorted(os.listdir(tmp_path)) == ['notes.txt', 'run-20261102T090000Z.log',
                                          'run-20261103T090000Z.log']


# A run in miniature: the filter goes in, TensorFlow is imported (its real import noise)
# before the log file exists, a subprocess inherits fd 2, libraries log and warn, the run
# warns, a C++ error line is written straight to fd 2, and the run crashes.
RUN = textwrap.dedent('''
    import logging, os, subprocess, sys, warnings
    from tfx_pipeline import console
    console.start(verbose={verbose})
    def run():
      if {import_tf}:  # before the log exists, as without --preset: the lines are held
        import tensorflow
      print('log:', console.attach_log({root!r}))
      subprocess.run([sys.executable, '-c', {child_code!r}], check=True)
      logging.getLogger('absl').warning('ArtifactQuery.property_predicate is not supported.')
      logging.getLogger('absl').info('Running driver for Trainer')
      from absl import logging as absl_logging  # as TF's SavedModel writer does:
      absl_logging.set_verbosity(absl_logging.get_verbosity())  # (autotrackable.py)
      absl_logging.info('Trainer hyperparameters: after a SavedModel')
      logging.getLogger('tensorflow').warning(
          'From x.py:1: f (from m) is deprecated and will be removed in a future version.\\n'
          'Instructions for updating:\\nUse g.')
      warnings.warn('old API', FutureWarning)
      logging.getLogger('absl').warning('serving dir is 95% full')
      os.write(2, b'E tensorflow/core/x.cc:1] a real C++ error\\n')
      print('[     8s] ImageExampleGen done in 8s', flush=True)
      from components import progress
      progress.show_on_console()
      progress.LOGGER.info('ImageExampleGen train: read 108, written 108, skipped 0')
      raise RuntimeError('the run crashed')
    try:
      run()
    finally:
      console.stop()
''')
CHILD = (b'2026-11-30 02:58:37.295448: W tensorflow/core/framework/local_rendezvous.cc:404] '
         b'Local rendezvous is aborting with status: OUT_OF_RANGE: End of sequence\n'
         b'\t [[{{node IteratorGetNext}}]]\nreal words from a Beam worker\n')
HIDDEN = ['ArtifactQuery.property_predicate', 'Running driver for Trainer',
          'Trainer hyperparameters: after a SavedModel', 'is deprecated',
          'Instructions for updating', 'Use g.', 'FutureWarning', 'old API',
          'OUT_OF_RANGE: End of sequence', 'IteratorGetNext']
SHOWN = ['serving dir is 95% full', 'a real C++ error', 'real words from a Beam worker',
         'Traceback (most recent call last):', 'RuntimeError: the run crashed']


def run_in_miniature(tmp_path, verbose, import_tf):
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  script = RUN.format(verbose=verbose, root=str(tmp_path / 'root'), import_tf=import_tf,
                      child_code=f'import os; os.write(2, {CHILD!r})')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  logs = os.listdir(tmp_path / 'root' / 'logs')
  assert len(logs) == 1, logs
  log = (tmp_path / 'root' / 'logs' / logs[0]).read_text()
  assert result.returncode == 1, result.stderr
  assert f'log: {tmp_path / "root" / "logs" / logs[0]}' in result.stdout
  # A crash names the log on the console too, next to its traceback.
  assert (f"the run log, with the libraries' messages: {tmp_path / 'root' / 'logs' / logs[0]}"
          in result.stderr)
  assert '[     8s] ImageExampleGen done in 8s' in result.stdout  # stdout untouched
  # Module code's progress lines: on stdout, and in the log too.
  assert 'ImageExampleGen train: read 108, written 108, skipped 0' in result.stdout
  assert 'INFO cifar10_alexnet: ImageExampleGen train: read 108' in log
  return result.stderr, log


def test_noise_goes_to_the_log_and_real_messages_to_the_console(tmp_path):
  console_text, log = run_in_miniature(tmp_path, verbose=False, import_tf=True)
  for text in SHOWN:
    assert text in console_text, text
    assert text in log, text
  for text in HIDDEN:
    assert text not in console_text, text
    assert text in log, text
  # TensorFlow's own import noise on this build: in the log, not on the console.
  assert 'Unable to register cuDNN factory' in log
  assert 'Unable to register' not in console_text
  assert [l for l in console_text.splitlines() if console.noise_of(l)] == []
  assert log.count('RuntimeError: the run crashed') == 1  # from stop(), not twice


def test_verbose_shows_everything_and_still_logs_it(tmp_path):
  console_text, log = run_in_miniature(tmp_path, verbose=True, import_tf=False)
  for text in SHOWN + HIDDEN:
    assert text in console_text, text
    assert text in log, text


def test_what_a_dying_run_wrote_last_still_reaches_the_console_and_the_log(tmp_path):
  # The filter is a process of its own: a run killed outright (a C++ abort, SIGKILL) cannot
  # take the lines it already wrote with it.
  noise = NOISE_SEEN[4].encode() + b'\n'
  script = textwrap.dedent(f'''
      import os, signal
      from tfx_pipeline import console
      console.start()
      console.attach_log({str(tmp_path / 'root')!r})
      os.write(2, {noise!r})
      os.write(2, b'F tensorflow/core/x.cc:1] Check failed: the last words\\n')
      os.kill(os.getpid(), signal.SIGKILL)
  ''')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == -9
  assert result.stderr == 'F tensorflow/core/x.cc:1] Check failed: the last words\n'
  log, = (tmp_path / 'root' / 'logs').iterdir()
  assert log.read_text().endswith(f'{NOISE_SEEN[4]}\nF tensorflow/core/x.cc:1] Check failed: '
                                  'the last words\n')


def test_a_full_disk_stops_the_log_with_one_warning_and_the_console_goes_on(capsys):
  # /dev/full: every write fails with ENOSPC, as on a full pipeline root.
  handler = console._LogFileHandler('/dev/full')  # pylint: disable=protected-access
  for i in range(3):
    handler.handle(record('absl', logging.INFO, 'line %d', i))
  handler.close()
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and err[0].startswith('warning: the run log is no longer written:')
  assert 'No space left on device' in err[0]

  control_r, control_w = os.pipe()
  filter_process = subprocess.Popen(
      [sys.executable, console.__file__, '--control-fd', str(control_r)],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(control_r,))
  os.close(control_r)
  os.write(control_w, b'/dev/full\n')
  os.close(control_w)
  out, _ = filter_process.communicate(
      f'{NOISE_SEEN[4]}\nE x.cc:1] a real error\n{NOISE_SEEN[4]}\nmore real words\n'.encode(),
      timeout=60)
  lines = out.decode().splitlines()
  warnings = [l for l in lines if l.startswith('warning: the run log is no longer written:')]
  assert len(warnings) == 1 and 'No space left on device' in warnings[0]
  assert [l for l in lines if l not in warnings] == ['E x.cc:1] a real error', 'more real words']
