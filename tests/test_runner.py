"""pipeline_runner: bad configuration fails in one clear line, exit 2, before any component."""

import json
import os

import pytest

import fixtures
import pipeline_runner


def run(argv, capsys, with_stdout=False):
  code = pipeline_runner.main(argv)
  captured = capsys.readouterr()
  err = captured.err.strip().splitlines()
  return (code, err, captured.out) if with_stdout else (code, err)


@pytest.mark.parametrize('argv, message', [
    (['--preset', 'smoke', '--epochs', '-1'], 'epochs must be at least 1'),
    (['--preset', 'smoke', '--model-variant', 'paper', '--image-size', '32'],
     "image size 32 is out of range for the 'paper' variant"),
    (['--preset', 'smoke', '--min-accuracy', '3'], 'min accuracy'),
    (['--preset', 'cpu', '--hparams-file', '/nonexistent.json', '--no-tune'],
     'hyperparameters file not found'),
    (['--preset', 'cpu', '--trials', '0'], 'trials must be at least 1'),
])
def test_bad_values_exit_2_with_one_line(argv, message, capsys, tmp_path):
  code, err = run(argv + ['--image-dir', str(tmp_path), '--pipeline-root',
                          str(tmp_path / 'root')], capsys)
  assert code == 2
  assert len(err) == 1 and err[0].startswith('error: ') and message in err[0]
  assert not (tmp_path / 'root').exists()  # nothing started


def test_missing_image_dir(capsys, tmp_path):
  code, err = run(['--preset', 'smoke', '--image-dir', str(tmp_path / 'missing')], capsys)
  assert code == 2 and 'does not exist' in err[0] and len(err) == 1


def test_fewer_than_two_classes(capsys, tmp_path):
  fixtures.make_image_tree(str(tmp_path), per_class=2, classes=('only',))
  code, err = run(['--preset', 'smoke', '--image-dir', str(tmp_path)], capsys)
  assert code == 2 and 'at least 2' in err[0]


def test_a_span_with_other_classes_exits_2_naming_them(capsys, tmp_path):
  fixtures.make_image_tree(str(tmp_path / 'span-1'), per_class=1, classes=('cat', 'dog'))
  fixtures.make_image_tree(str(tmp_path / 'span-2'), per_class=1, classes=('cat', 'frog'))
  code, err = run(['--preset', 'smoke', '--image-dir', str(tmp_path / 'span-{SPAN}'),
                   '--pipeline-root', str(tmp_path / 'root')], capsys)
  assert code == 2 and len(err) == 1
  assert "adds ['frog'] and drops ['dog'] against span 1" in err[0]
  assert not (tmp_path / 'root').exists()


def test_day_two_flags_reach_the_config(tmp_path):
  fixtures.make_image_tree(str(tmp_path), per_class=1, classes=('a', 'b'))
  cfg = pipeline_runner.build_config(pipeline_runner.parse_args([
      '--image-dir', str(tmp_path), '--train-spans', '3', '--retune', '--from-scratch',
      '--max-regression', '0.01', '--max-class-regression', '0.1',
      '--min-class-accuracy', '0.2', '--warm-start-epochs', '9',
      '--warm-start-lr-scale', '0.5', '--warm-start-replay', '0.4']), 'cpu')
  assert cfg.data.train_spans == 3 and cfg.tune.retune and not cfg.train.warm_start
  assert (cfg.train.warm_start_epochs, cfg.train.warm_start_lr_scale,
          cfg.train.warm_start_replay) == (9, 0.5, 0.4)
  assert (cfg.gate.max_regression, cfg.gate.max_class_regression,
          cfg.gate.min_class_accuracy) == (0.01, 0.1, 0.2)


def test_unknown_preset_is_an_argparse_error(capsys):
  with pytest.raises(SystemExit) as info:
    pipeline_runner.main(['--preset', 'huge'])
  assert info.value.code == 2
  assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_offline_tfds_names_the_image_dir_route(capsys, tmp_path, monkeypatch):
  import socket

  def unreachable(*args, **kwargs):
    raise OSError('network is unreachable')
  monkeypatch.setattr(socket, 'create_connection', unreachable)
  code, err = run(['--preset', 'smoke', '--tfds-data-dir', str(tmp_path)], capsys)
  assert code == 2 and len(err) == 1
  assert 'unreachable' in err[0] and '--image-dir' in err[0]


def test_preset_defaults_to_cpu_without_a_gpu(capsys, tmp_path, monkeypatch):
  monkeypatch.setattr(pipeline_runner, 'gpu_visible', lambda: False)
  code, _, out = run(['--epochs', '0', '--image-dir', str(tmp_path)], capsys, with_stdout=True)
  assert code == 2
  assert "--preset not given: using 'cpu' (no GPU visible)" in out


def test_flags_override_the_preset(tmp_path):
  fixtures.make_image_tree(str(tmp_path), per_class=1, classes=('a', 'b'))
  args = pipeline_runner.parse_args([
      '--preset', 'cpu', '--image-dir', str(tmp_path), '--epochs', '3', '--trials', '2',
      '--tuner', 'random', '--model-variant', 'paper', '--min-accuracy', '0.5',
      '--beam-workers', '2', '--beam-arg=--x=1', '--no-test-time-flip',
      '--ema-momentum', '0.99', '--conv-widths', '64,128,256,256,256', '--alternating-flip',
      '--no-dirac-init', '--bias-lr-scale', '16'])
  cfg = pipeline_runner.build_config(args, 'cpu')
  assert (cfg.train.epochs, cfg.tune.max_trials, cfg.tune.algorithm) == (3, 2, 'random')
  assert not cfg.train.test_time_flip and pipeline_runner.config_lib.cpu().train.test_time_flip
  assert cfg.train.ema_momentum == 0.99
  # It reaches the Trainer: run_fn rebuilds TrainConfig from the module config.
  settings = json.loads(json.dumps(cfg.module_config()))
  train = pipeline_runner.config_lib.train_config_from_dict(settings['train'])
  assert (train.ema_momentum, train.alternating_flip, train.bias_lr_scale) == (0.99, True, 16)
  assert pipeline_runner.config_lib.cpu().train.bias_lr_scale == 1.0
  assert not pipeline_runner.config_lib.cpu().train.alternating_flip
  model = pipeline_runner.config_lib.model_config_from_dict(settings['model'])
  assert (model.conv_widths, model.dirac_init) == ((64, 128, 256, 256, 256), False)
  assert pipeline_runner.config_lib.cpu().model.dirac_init
  assert (cfg.model.variant, cfg.model.image_size) == ('paper', 227)
  assert cfg.gate.min_accuracy == 0.5
  assert cfg.beam_workers == 2 and cfg.beam_args == ('--x=1',)
  assert cfg.data.image_dir == os.path.abspath(str(tmp_path))
  assert pipeline_runner.build_config(pipeline_runner.parse_args([]), 'cpu') == \
      pipeline_runner.config_lib.cpu()


def flags():
  """Each option of the runner's parser, by its first long name (no copy of the list)."""
  return {a.option_strings[0]: a for a in pipeline_runner.build_parser()._actions
          if a.dest != 'help'}


def test_every_flag_has_a_help_line_in_help(capsys):
  with pytest.raises(SystemExit):
    pipeline_runner.main(['--help'])
  text = capsys.readouterr().out
  for flag, action in flags().items():
    assert action.help and action.help.strip(), f'{flag} has no help text'
    assert flag in text


# README "Failure modes": a bad flag value is one `error: ...` line naming the value,
# exit status 2, before any component starts. One row per flag of the parser:
# flag -> (argv with a bad value, the value as the message names it, words of the message).
BAD_VALUES = {
    '--preset': (['--preset', 'huge'], "'huge'", 'invalid choice'),
    '--image-dir': (['--image-dir', '/nonexistent/images'], '/nonexistent/images',
                    'does not exist'),
    '--train-spans': (['--train-spans', '-1'], '-1', 'train_spans must be >= 0'),
    '--schema': (['--schema', '/nonexistent/schema.pbtxt'], '/nonexistent/schema.pbtxt',
                 'schema must be'),
    '--on-drift': (['--on-drift', 'ignore'], "'ignore'", 'invalid choice'),
    '--tfds-data-dir': (['--tfds-data-dir', '{file}'], '{file}', 'is a file'),
    '--eval-percent': (['--eval-percent', '100'], '100', 'eval_percent must be in 1..99'),
    '--max-examples': (['--max-examples', '0'], '0', 'max_examples must be positive'),
    '--on-bad-image': (['--on-bad-image', 'ignore'], "'ignore'", 'invalid choice'),
    '--max-image-pixels': (['--max-image-pixels', '1000'], '1000',
                           'max_image_pixels must be at least'),
    '--infer-dir': (['--infer-dir', '/nonexistent/new-images'], '/nonexistent/new-images',
                    'does not exist'),
    '--pipeline-root': (['--pipeline-root', '{file}'], '{file}', 'is a file'),
    '--serving-dir': (['--serving-dir', '{file}'], '{file}', 'is a file'),
    '--pipeline-name': (['--pipeline-name', 'My Pipeline'], "'My Pipeline'",
                        'lowercase letters'),
    '--no-cache': (['--no-cache=yes'], "'yes'", 'ignored explicit argument'),
    '--verbose': (['--verbose=all'], "'all'", 'ignored explicit argument'),
    '--to-node': (['--to-node', 'Trainr'], "'Trainr'", 'is not a component'),
    '--model-variant': (['--model-variant', 'vgg'], "'vgg'", 'invalid choice'),
    '--image-size': (['--image-size', '4'], '4', 'out of range'),
    '--epochs': (['--epochs', '-1'], '-1', 'epochs must be at least 1'),
    '--batch-size': (['--batch-size', '0'], '0', 'batch size must be at least 1'),
    '--mixed-precision': (['--mixed-precision=yes'], "'yes'", 'ignored explicit argument'),
    '--jit-compile': (['--jit-compile=no'], "'no'", 'ignored explicit argument'),
    '--test-time-flip': (['--test-time-flip=no'], "'no'", 'ignored explicit argument'),
    '--alternating-flip': (['--alternating-flip=no'], "'no'", 'ignored explicit argument'),
    '--patch-whitening': (['--patch-whitening=no'], "'no'", 'ignored explicit argument'),
    '--dirac-init': (['--dirac-init=no'], "'no'", 'ignored explicit argument'),
    '--conv-widths': (['--conv-widths', '64,128,256'], '(64, 128, 256)',
                      'conv_widths must be five positive channel counts'),
    '--ema-momentum': (['--ema-momentum', '1'], '1', r'ema_momentum must be in [0, 1)'),
    '--bias-lr-scale': (['--bias-lr-scale', '0'], '0', 'bias_lr_scale must be positive'),
    '--tuner': (['--tuner', 'grid'], "'grid'", 'invalid choice'),
    '--trials': (['--trials', '0'], '0', 'trials must be at least 1'),
    '--tuning-epochs': (['--tuning-epochs', 'two'], "'two'", 'invalid int value'),
    '--no-tune': (['--no-tune=1'], "'1'", 'ignored explicit argument'),
    '--hparams-file': (['--hparams-file', '/nonexistent.json', '--no-tune'],
                       '/nonexistent.json', 'hyperparameters file not found'),
    '--retune': (['--retune=true'], "'true'", 'ignored explicit argument'),
    '--from-scratch': (['--from-scratch=1'], "'1'", 'ignored explicit argument'),
    '--warm-start-epochs': (['--warm-start-epochs', '0'], '0',
                            'warm_start_epochs must be at least 1'),
    '--warm-start-lr-scale': (['--warm-start-lr-scale', '2'], '2',
                              'warm_start_lr_scale must be in (0, 1]'),
    '--warm-start-replay': (['--warm-start-replay', '0'], '0',
                            'warm_start_replay must be in (0, 1]'),
    '--tflite': (['--tflite', 'int4'], "'int4'", 'invalid choice'),
    '--min-accuracy': (['--min-accuracy', '3'], '3', 'min accuracy must be in 0..1'),
    '--max-regression': (['--max-regression', '-0.1'], '-0.1', 'max_regression must be >= 0'),
    '--max-class-regression': (['--max-class-regression', '2'], '2',
                               'max_class_regression must be in 0..1'),
    '--min-class-accuracy': (['--min-class-accuracy', 'high'], "'high'", 'invalid float value'),
    '--beam-workers': (['--beam-workers', '0'], '0', 'beam workers must be at least 1'),
    '--beam-arg': (['--beam-arg=runner=DataflowRunner'], "'runner=DataflowRunner'",
                   'written --name=value'),
    '--runner': (['--runner', 'airflow'], "'airflow'", 'invalid choice'),
    '--output': (['--runner', 'kubeflow-v2', '--output', '/nonexistent/pipeline.json'],
                 '/nonexistent/pipeline.json', 'existing directory'),
    '--image': (['--runner', 'kubeflow-v2', '--image', 'https://gcr.io/p/image'],
                'https://gcr.io/p/image', 'container image name'),
}


def test_every_flag_has_a_bad_value_row():
  assert sorted(flags()) == sorted(BAD_VALUES)


@pytest.fixture
def restored_environment(monkeypatch):
  """main() points TMPDIR, KERAS_HOME and MPLCONFIGDIR into the root; undo it afterwards."""
  import tempfile
  for var in ('TMPDIR', 'KERAS_HOME', 'MPLCONFIGDIR'):
    if var in os.environ:
      monkeypatch.setenv(var, os.environ[var])
    else:
      monkeypatch.delenv(var, raising=False)
  monkeypatch.setattr(tempfile, 'tempdir', tempfile.tempdir)


@pytest.mark.parametrize('flag', sorted(BAD_VALUES))
def test_a_bad_value_of_each_flag_is_one_error_line_naming_it(flag, tmp_path, capsys,
                                                              restored_environment):
  tree = fixtures.make_image_tree(str(tmp_path / 'tree'), per_class=1, classes=('a', 'b'))
  file = tmp_path / 'a_file'
  file.write_text('not a directory')
  argv, named, words = (
      [a.replace('{file}', str(file)) for a in part] if isinstance(part, list)
      else part.replace('{file}', str(file)) for part in BAD_VALUES[flag])
  root = tmp_path / 'root'
  try:
    code = pipeline_runner.main(['--preset', 'smoke', '--image-dir', tree,
                                 '--pipeline-root', str(root)] + argv)
  except SystemExit as e:  # argparse's own checks: types and choices
    code = e.code
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2, err
  assert len(err) == 1 and err[0].startswith('error: '), err
  assert words in err[0] and named in err[0], err[0]
  assert not (root / 'metadata.sqlite').exists()  # nothing started


def test_the_runner_names_every_folder_it_writes(tmp_path):
  tfds = pipeline_runner.build_config(pipeline_runner.parse_args(
      ['--pipeline-root', str(tmp_path / 'r'), '--serving-dir', str(tmp_path / 's')]), 'smoke')
  assert pipeline_runner.written_dirs(tfds) == [
      ('--pipeline-root', str(tmp_path / 'r')), ('--serving-dir', str(tmp_path / 's')),
      ('--tfds-data-dir', os.path.expanduser(
          os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')))]
  folders = pipeline_runner.build_config(pipeline_runner.parse_args(
      ['--image-dir', str(tmp_path), '--tfds-data-dir', str(tmp_path / 't')]), 'smoke')
  assert [flag for flag, _ in pipeline_runner.written_dirs(folders)] == [
      '--pipeline-root', '--serving-dir']


def test_full_disk_a_failed_run_says_the_disk_is_full_and_where(small_disk, tmp_path):
  import dataclasses
  import tensorflow as tf
  from components import disk_space
  cfg = dataclasses.replace(pipeline_runner.config_lib.smoke(), pipeline_root=small_disk,
                            serving_dir=str(tmp_path / 'serving'))
  fixtures.fill_disk(small_disk)
  try:  # as a component's error reaches the runner: TensorFlow's, under another
    try:
      raise tf.errors.ResourceExhaustedError(None, None, 'x/y; No space left on device')
    except tf.errors.ResourceExhaustedError as e:
      raise RuntimeError('Trainer failed') from e
  except RuntimeError as error:
    line = pipeline_runner.disk_full_line(error, cfg)
  assert line.startswith(f'error: the disk is full: {small_disk} (0 bytes free of 4.0 MB); '
                         'free space and run the same command again')
  ours = disk_space.DiskFullError(cfg.serving_dir, 'the disk is full: ...')
  assert pipeline_runner.disk_full_line(ours, cfg).startswith(
      f'error: the disk is full: {cfg.serving_dir} (')
  assert pipeline_runner.disk_full_line(ValueError('bad'), cfg) is None
