"""Forward FLOPs counted from a net's layers, and the training compute a fit records."""

import copy

import keras
import pytest

from models import flops

# The tiny net below, by hand (a multiply-add is 2 FLOPs, biases not counted):
CONV_SAME = 2 * 3 * 3 * 3 * 4 * (8 * 8)  # 3x3, 3 -> 4 channels, 'same' on 8x8: 13,824
CONV_STRIDED = 2 * 3 * 3 * 4 * 6 * (3 * 3)  # 3x3/2 'valid' on 8x8 -> 3x3, 4 -> 6: 3,888
DENSE = 2 * (3 * 3 * 6) * 5  # flattened 54 -> 5: 540
TINY = CONV_SAME + CONV_STRIDED + DENSE  # 18,252


def tiny_net(api=keras):
  """The same net in `api`: Keras 3 (`keras`) or `tf_keras`."""
  layers = api.layers
  inputs = api.Input((8, 8, 3))
  x = layers.Conv2D(4, 3, padding='same')(inputs)
  x = layers.BatchNormalization()(x)
  x = layers.ReLU()(x)
  x = layers.Conv2D(6, 3, strides=2, padding='valid', use_bias=False)(x)
  x = layers.Flatten()(x)
  x = layers.Dropout(0.5)(x)
  return api.Model(inputs, layers.Dense(5, activation='softmax')(x))


def test_a_tiny_net_counts_its_convolutions_and_dense_layer_by_hand():
  model = tiny_net()
  counted = [flops.layer_flops(layer) for layer in model.layers]
  assert [n for n in counted if n] == [CONV_SAME, CONV_STRIDED, DENSE]
  assert flops.forward_flops(model) == TINY == 18_252


def test_tf_keras_models_count_the_same():
  tf_keras = pytest.importorskip('tf_keras')
  model = tiny_net(tf_keras)
  assert flops.forward_flops(model) == TINY


def test_nested_models_are_opened_and_dense_counts_per_position():
  block = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 1)], name='block')
  inputs = keras.Input((4, 4, 2))
  outputs = keras.layers.Dense(7)(block(inputs))  # applied at each of 4x4 positions
  model = keras.Model(inputs, outputs)
  assert flops.forward_flops(model) == 2 * 2 * 3 * 16 + 2 * 3 * 7 * 16


def test_a_layer_with_weights_and_no_rule_is_refused():
  inputs = keras.Input((8, 8, 3))
  model = keras.Model(inputs, keras.layers.Conv2DTranspose(4, 3, name='up')(inputs))
  with pytest.raises(ValueError, match="'up' of type Conv2DTranspose"):
    flops.forward_flops(model)


# The cpu preset's frozen 2x2 whitening layer: 3 -> 12 channels at 32x32.
WHITENING_FLOPS = 2 * 4 * 3 * 12 * 32 * 32


def test_the_cpu_preset_nets_are_about_59_and_65_mflop():
  counted = {values['dense_units']: flops.forward_flops(model)
             for values, model in flops.preset_nets('cpu', num_classes=10)}
  # The whitening layer, then 3x3 convolutions 32-64-128-256-256 at 32, 16,
  # 8, 4 and 4 pixels a side; conv1 sees the whitening's 12 channels.
  convolutions = 2 * 9 * (12 * 32 * 32 * 32 + 32 * 64 * 16 * 16 + 64 * 128 * 8 * 8
                          + 128 * 256 * 4 * 4 + 256 * 256 * 4 * 4)
  head = {units: 2 * (4 * 4 * 256 * units + units * units + units * 10)
          for units in (512, 1024)}
  assert counted == {units: WHITENING_FLOPS + convolutions + head[units] for units in (512, 1024)}
  assert counted == {512: 59_287_552, 1024: 65_064_960}


def test_other_conv_widths_are_counted_from_the_layers_they_build():
  (values, model), = [(v, m) for v, m in flops.preset_nets('cpu', 10, (64, 128, 256, 256, 128))
                      if v['dense_units'] == 512]
  assert values['conv_widths'] == (64, 128, 256, 256, 128)
  convolutions = 2 * 9 * (12 * 64 * 32 * 32 + 64 * 128 * 16 * 16 + 128 * 256 * 8 * 8
                          + 256 * 256 * 4 * 4 + 256 * 128 * 4 * 4)
  head = 2 * (4 * 4 * 128 * 512 + 512 * 512 + 512 * 10)
  assert flops.forward_flops(model) == WHITENING_FLOPS + convolutions + head


def test_a_record_sums_fits_at_three_times_the_forward_pass():
  record = flops.record([(50_000_000, 1_000), (60_000_000, 2_000)])
  assert record['images'] == 3_000
  assert record['training_tflop'] == pytest.approx(3 * (5e10 + 1.2e11) / 1e12)
  assert record['fits'][1] == {'forward_flops_per_image': 60_000_000, 'images': 2_000}
  assert flops.record([]) == {'fits': [], 'images': 0, 'training_tflop': 0.0}


def test_the_compute_log_counts_finished_epochs_across_keras_tuner_copies():
  model = tiny_net()
  log = flops.ComputeLog(images_per_epoch=96)
  for epochs in (2, 1):  # two trials; keras-tuner deep-copies callbacks for each
    trial = copy.deepcopy(log)
    trial.set_model(model)
    trial.on_train_begin()
    for epoch in range(epochs):
      trial.on_epoch_end(epoch)
  assert log.record()['fits'] == [{'forward_flops_per_image': TINY, 'images': 192},
                                  {'forward_flops_per_image': TINY, 'images': 96}]
  assert log.record()['training_tflop'] == pytest.approx(3 * TINY * 288 / 1e12)
