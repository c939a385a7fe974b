"""Config: presets are valid, bad values fail with a message naming the field."""

import dataclasses

import pytest

from tfx_pipeline import config


@pytest.mark.parametrize('name', config.PRESETS)
def test_presets_are_valid_and_named(name):
  cfg = config.preset(name)
  assert cfg.preset == name
  assert cfg.model.image_size >= config.MIN_IMAGE_SIZE[cfg.model.variant]


def test_unknown_preset_is_refused():
  with pytest.raises(config.ConfigError, match='unknown preset'):
    config.preset('huge')


@pytest.mark.parametrize('section, changes, message', [
    ('train', {'epochs': -1}, 'epochs must be at least 1'),
    ('train', {'batch_size': 0}, 'batch size'),
    ('train', {'ema_momentum': 1.0}, r'ema_momentum must be in \[0, 1\)'),
    ('train', {'ema_momentum': -0.5}, r'ema_momentum must be in \[0, 1\)'),
    ('model', {'variant': 'paper', 'image_size': 32}, 'too small|out of range'),
    ('model', {'variant': 'vgg'}, 'variant'),
    ('model', {'conv_widths': (64, 128, 256, 256)}, 'conv_widths must be five'),
    ('model', {'conv_widths': (64, 128, 0, 256, 256)}, 'conv_widths must be five positive'),
    ('tune', {'algorithm': 'grid'}, 'tuner must be one of'),
    ('gate', {'min_accuracy': 2.0}, 'min accuracy'),
    ('data', {'on_bad_image': 'ignore'}, 'on_bad_image'),
    ('data', {'eval_percent': 0}, 'eval_percent'),
    ('data', {'max_image_pixels': 300 * 200}, 'max_image_pixels must be at least'),
    ('tflite', {'quantization': 'int4'}, 'TFLite quantization must be one of'),
    ('tflite', {'representative_images': 0}, 'representative_images must be at least 1'),
])
def test_bad_values_fail_with_the_field_name(section, changes, message):
  base = getattr(config.cpu(), section)
  with pytest.raises(config.ConfigError, match=message):
    dataclasses.replace(base, **changes)


def test_ema_momentum_takes_0_as_off_and_values_just_under_1():
  assert config.TrainConfig().ema_momentum == 0.0
  assert config.TrainConfig(ema_momentum=0.999).ema_momentum == 0.999


def test_paper_variant_minimum_size_is_enforced_at_the_boundary():
  config.ModelConfig(variant='paper', image_size=67)
  with pytest.raises(config.ConfigError):
    config.ModelConfig(variant='paper', image_size=66)


def test_module_config_round_trips_through_json():
  import json
  cfg = config.full()
  settings = json.loads(json.dumps(cfg.module_config()))
  assert config.model_config_from_dict(settings['model']) == cfg.model
  assert config.train_config_from_dict(settings['train']) == cfg.train
  assert config.tune_config_from_dict(settings['tune']) == cfg.tune
  assert settings['max_image_pixels'] == cfg.data.max_image_pixels == config.MAX_IMAGE_PIXELS


def test_beam_args_switch_to_multiprocessing_with_workers():
  cfg = dataclasses.replace(config.smoke(), beam_workers=2, beam_args=('--foo=1',))
  assert '--direct_running_mode=multi_processing' in cfg.beam_pipeline_args
  assert '--direct_num_workers=2' in cfg.beam_pipeline_args
  assert cfg.beam_pipeline_args[-1] == '--foo=1'
  assert '--direct_running_mode=multi_processing' not in config.smoke().beam_pipeline_args


def test_beam_workers_depend_on_this_package_unless_the_user_names_a_dependency():
  from tfx.utils import dependency_utils
  args = list(config.smoke().beam_pipeline_args)
  assert f'--setup_file={config.REPO}/setup.py' in args
  # TFX then leaves the flags alone instead of building an sdist of itself.
  assert dependency_utils.make_beam_dependency_flags(args) == args
  image = '--sdk_container_image=gcr.io/p/cifar10-alexnet:latest'
  for given in (image, '--setup_file=./setup.py', '--extra_package=dist/x.tar.gz'):
    cfg = dataclasses.replace(config.smoke(), beam_args=(given,))
    assert [a for a in cfg.beam_pipeline_args if not a.startswith('--direct')] == [given]


def test_the_compute_budget_is_the_cpu_presets_and_positive():
  assert config.cpu().compute_budget_tflop == 400
  assert config.smoke().compute_budget_tflop is None
  with pytest.raises(config.ConfigError, match='compute budget'):
    dataclasses.replace(config.cpu(), compute_budget_tflop=0)
