"""Both AlexNet variants build with the expected output shape and parameter count."""

import keras
import numpy as np
import pytest

from models import alexnet, training
from tfx_pipeline import config
from tuning.search_space import search_space


def hp_for(variant, **values):
  tune = config.full().tune if variant == 'paper' else config.cpu().tune
  hp = search_space(tune, variant)
  hp.values.update(values)
  return hp


def conv(k, cin, cout):  # no bias (BatchNorm follows) + 4 BatchNorm parameters per channel
  return k * k * cin * cout + 4 * cout


def dense_bn(cin, cout):
  return cin * cout + 4 * cout


def test_cifar_variant_shape_and_parameter_count():
  model = alexnet.build_model(hp_for('cifar', width_multiplier=1.0, dense_units=512),
                              'cifar', 32, 10)
  assert model.output_shape == (None, 10)
  expected = (conv(3, 3, 32) + conv(3, 32, 64) + conv(3, 64, 128) + conv(3, 128, 256)
              + conv(3, 256, 256) + dense_bn(4 * 4 * 256, 512) + dense_bn(512, 512)
              + 512 * 10 + 10)
  assert model.count_params() == expected  # 3,349,130


def test_width_multiplier_scales_channels():
  model = alexnet.build_model(hp_for('cifar', width_multiplier=0.5, dense_units=64),
                              'cifar', 32, 3)
  assert model.get_layer('conv1_conv').filters == 16
  assert model.get_layer('conv5_conv').filters == 128
  assert model.output_shape == (None, 3)


def test_conv_widths_set_each_convolution_before_the_width_multiplier():
  widths = (64, 128, 256, 256, 128)
  model = alexnet.build_model(hp_for('cifar', width_multiplier=1.0, dense_units=512),
                              'cifar', 32, 10, conv_widths=widths)
  assert [model.get_layer(f'conv{i}_conv').filters for i in range(1, 6)] == list(widths)
  assert model.get_layer('fc1').kernel.shape == (4 * 4 * 128, 512)
  half = alexnet.build_model(hp_for('cifar', width_multiplier=0.5, dense_units=64),
                             'cifar', 32, 10, conv_widths=widths)
  assert [half.get_layer(f'conv{i}_conv').filters for i in range(1, 6)] == [32, 64, 128, 128, 64]


def test_dirac_init_starts_each_stride_one_convolution_as_an_identity():
  hp = hp_for('cifar', width_multiplier=0.5, dense_units=64)
  keras.utils.set_random_seed(0)
  model = alexnet.build_model(hp, 'cifar', 32, 10, dirac=True)
  keras.utils.set_random_seed(0)
  plain = alexnet.build_model(hp, 'cifar', 32, 10)
  for i in range(1, 6):
    layer = model.get_layer(f'conv{i}_conv')
    kernel, random_kernel = layer.kernel.numpy(), plain.get_layer(f'conv{i}_conv').kernel.numpy()
    n = min(kernel.shape[2], kernel.shape[3])
    # The first n filters copy their input channel through; the rest are Keras' own.
    x = np.random.default_rng(i).normal(size=(2, 8, 8, kernel.shape[2])).astype('float32')
    np.testing.assert_allclose(layer(x).numpy()[..., :n], x[..., :n], atol=1e-6)
    np.testing.assert_array_equal(kernel[..., n:], random_kernel[..., n:])
    assert not np.allclose(random_kernel[..., :n], kernel[..., :n])
  # Only the convolutions: the head is initialized as without it.
  np.testing.assert_array_equal(model.get_layer('fc1').kernel.numpy(),
                                plain.get_layer('fc1').kernel.numpy())


def test_dirac_kernel_leaves_extra_input_channels_unread():
  kernel = alexnet.dirac_kernel(np.ones((3, 3, 4, 2), 'float32'))
  assert kernel[1, 1].tolist() == [[1, 0], [0, 1], [0, 0], [0, 0]]
  assert kernel.sum() == 2.0


def test_paper_variant_matches_krizhevsky_at_227():
  model = alexnet.build_model(hp_for('paper', width_multiplier=1.0, dense_units=4096,
                                     lrn=True), 'paper', 227, 10)
  assert model.get_layer('conv5_conv').output.shape[1:] == (13, 13, 256)
  assert model.get_layer('flatten').output.shape[1:] == (6 * 6 * 256,)
  expected = (conv(11, 3, 96) + conv(5, 96, 256) + conv(3, 256, 384) + conv(3, 384, 384)
              + conv(3, 384, 256) + dense_bn(9216, 4096) + dense_bn(4096, 4096)
              + 4096 * 10 + 10)
  assert model.count_params() == expected


def test_paper_variant_builds_at_its_minimum_size():
  size = config.MIN_IMAGE_SIZE['paper']
  model = alexnet.build_model(hp_for('paper', width_multiplier=0.5, dense_units=64),
                              'paper', size, 10)
  assert model.get_layer('flatten').output.shape[1] == 128  # 1x1x128


def test_outputs_are_probabilities_and_training_reduces_loss():
  hp = hp_for('cifar', width_multiplier=0.25, dense_units=32)
  model = alexnet.build_model(hp, 'cifar', 16, 4)
  training.compile_model(model, hp, total_steps=40)
  rng = np.random.default_rng(0)
  y = rng.integers(0, 4, 64)
  x = (y[:, None, None, None] - 1.5 + rng.normal(0, .3, (64, 16, 16, 3))).astype('float32')
  probs = model.predict(x, verbose=0)
  np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
  before = model.evaluate(x, y, verbose=0)[0]
  model.fit(x, y, batch_size=16, epochs=10, verbose=0)
  assert model.evaluate(x, y, verbose=0)[0] < before


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match='variant'):
    alexnet.build_model(hp_for('cifar'), 'vgg', 32, 10)


def test_one_cycle_schedule_shape():
  schedule = training.OneCycle(peak=1.0, total_steps=100, warmup=0.2)
  values = [float(schedule(s)) for s in (0, 10, 20, 60, 100, 150)]
  assert values == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0])


def test_model_is_keras_3_not_tf_keras():
  model = alexnet.build_model(hp_for('cifar'), 'cifar', 32, 10)
  assert isinstance(model, keras.Model)
  assert type(model).__module__.startswith('keras.')
