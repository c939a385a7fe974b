"""pipeline_runner: bad configuration fails in one clear line, exit 2, before any component."""

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
      '--min-class-accuracy', '0.2']), 'cpu')
  assert cfg.data.train_spans == 3 and cfg.tune.retune and not cfg.train.warm_start
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
      '--beam-workers', '2', '--beam-arg=--x=1'])
  cfg = pipeline_runner.build_config(args, 'cpu')
  assert (cfg.train.epochs, cfg.tune.max_trials, cfg.tune.algorithm) == (3, 2, 'random')
  assert (cfg.model.variant, cfg.model.image_size) == ('paper', 227)
  assert cfg.gate.min_accuracy == 0.5
  assert cfg.beam_workers == 2 and cfg.beam_args == ('--x=1',)
  assert cfg.data.image_dir == os.path.abspath(str(tmp_path))
  assert pipeline_runner.build_config(pipeline_runner.parse_args([]), 'cpu') == \
      pipeline_runner.config_lib.cpu()


def test_help_documents_every_flag(capsys):
  with pytest.raises(SystemExit):
    pipeline_runner.main(['--help'])
  text = capsys.readouterr().out
  for flag in ('--preset', '--image-dir', '--pipeline-root', '--serving-dir', '--epochs',
               '--trials', '--image-size', '--model-variant', '--min-accuracy',
               '--no-tune', '--hparams-file', '--on-bad-image', '--beam-workers',
               '--train-spans', '--retune', '--from-scratch', '--max-class-regression'):
    assert flag in text
