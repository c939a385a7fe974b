"""The shared input function: augmentation is exact, training-only and per-image."""

import numpy as np
import pytest
import tensorflow as tf

from components import data


def test_crop_without_padding_or_flip_is_identity():
  images = tf.random.uniform([4, 8, 8, 3])
  tf.random.set_seed(0)
  out = data.flip_and_crop(images, pad=0).numpy()
  for original, got in zip(images.numpy(), out):
    assert np.array_equal(got, original) or np.array_equal(got, original[:, ::-1])


def test_flip_and_crop_moves_pixels_within_the_padding():
  images = tf.reshape(tf.range(2 * 6 * 6 * 1, dtype=tf.float32), [2, 6, 6, 1])
  out = data.flip_and_crop(images, pad=2)
  assert out.shape == images.shape
  values = set(np.unique(out.numpy()))
  assert values <= set(np.unique(images.numpy()))  # reflect-padding adds no new values


def test_augmentation_differs_per_image_and_per_call():
  images = tf.tile(tf.reshape(tf.range(32 * 32 * 3, dtype=tf.float32), [1, 32, 32, 3]), [16, 1, 1, 1])
  first = data.flip_and_crop(images).numpy()
  second = data.flip_and_crop(images).numpy()
  distinct = {first[i].tobytes() for i in range(16)}
  assert len(distinct) > 4
  assert not np.array_equal(first, second)


def _raw(n):
  images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) * np.ones((1, 8, 8, 3), np.float32)
  labels = np.arange(n, dtype=np.int64)
  return tf.data.Dataset.from_tensor_slices({'x': images, 'y': labels}).batch(5)


def _layer(batch):
  return {'image_xf': batch['x'], 'label_xf': batch['y']}


def test_eval_batches_are_in_order_unaugmented_and_complete():
  ds = data.make_dataset(_raw(12), _layer, batch_size=5, training=False)
  batches = list(ds)
  assert [len(y) for _, y in batches] == [5, 5, 2]
  labels = np.concatenate([y.numpy() for _, y in batches])
  np.testing.assert_array_equal(labels, np.arange(12))
  images = np.concatenate([x.numpy() for x, _ in batches])
  np.testing.assert_array_equal(images[:, 0, 0, 0], np.arange(12))


def test_training_batches_shuffle_drop_remainder_and_keep_pairs():
  ds = data.make_dataset(_raw(12), _layer, batch_size=5, training=True, seed=1)
  batches = list(ds)
  assert [len(y) for _, y in batches] == [5, 5]
  for x, y in batches:  # each image is constant-valued = its label, whatever the crop/flip
    np.testing.assert_array_equal(x.numpy().reshape(len(y), -1).max(1), y.numpy())
  epoch2 = np.concatenate([y.numpy() for _, y in ds])
  assert not np.array_equal(np.concatenate([y.numpy() for _, y in batches]), epoch2)


def test_take_limits_examples():
  ds = data.make_dataset(_raw(12), _layer, batch_size=4, training=False, take=6)
  assert sum(len(y) for _, y in ds) == 6


def test_subset_is_a_random_sample_even_when_files_are_sorted_by_class():
  n = 400
  images = np.zeros((n, 8, 8, 3), np.float32)
  labels = np.repeat(np.arange(4), n // 4).astype(np.int64)  # class-sorted, like folder order
  raw = tf.data.Dataset.from_tensor_slices({'x': images, 'y': labels}).batch(50)
  ds = data.make_dataset(raw, _layer, batch_size=20, training=False, take=100, seed=3)
  first = np.concatenate([y.numpy() for _, y in ds])
  assert len(first) == 100 and len(set(first)) == 4  # not just the first class
  again = np.concatenate([y.numpy() for _, y in ds])
  np.testing.assert_array_equal(np.sort(first), np.sort(again))  # same sample each epoch


def test_uncached_training_still_shuffles_every_epoch():
  ds = data.make_dataset(_raw(40), _layer, batch_size=10, training=True, cache=False, seed=1)
  first = np.concatenate([y.numpy() for _, y in ds])
  second = np.concatenate([y.numpy() for _, y in ds])
  assert sorted(first) == list(range(40)) and not np.array_equal(first, second)


def test_a_known_count_gives_keras_the_number_of_batches():
  train = data.make_dataset(_raw(12), _layer, batch_size=5, training=True, seed=1,
                            num_examples=12)
  subset = data.make_dataset(_raw(12), _layer, batch_size=4, training=False, take=6,
                             num_examples=12)
  unknown = data.make_dataset(_raw(12), _layer, batch_size=5, training=True, seed=1)
  assert (int(train.cardinality()), int(subset.cardinality())) == (2, 2)
  assert int(unknown.cardinality()) == tf.data.UNKNOWN_CARDINALITY


def test_fit_on_a_counted_dataset_does_not_warn_that_the_input_ran_out():
  import warnings
  import keras
  model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                            keras.layers.Dense(12, activation='softmax')])
  model.compile('sgd', 'sparse_categorical_crossentropy')
  for num_examples, expect_warning in ((None, True), (12, False)):
    ds = data.make_dataset(_raw(12), _layer, batch_size=5, training=True, seed=1,
                           num_examples=num_examples)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      history = model.fit(ds, epochs=2, verbose=0)
    ran_out = any('ran out of data' in str(w.message) for w in caught)
    assert ran_out == expect_warning, (num_examples, [str(w.message) for w in caught])
    assert len(history.history['loss']) == 2


def test_a_wrong_count_fails_plainly():
  ds = data.make_dataset(_raw(12), _layer, batch_size=5, training=False, num_examples=13)
  with pytest.raises(tf.errors.FailedPreconditionError, match='expected to contain 13'):
    list(ds)


def _labelled(labels):
  labels = np.asarray(labels, np.int64)
  images = labels.astype(np.float32).reshape(-1, 1, 1, 1) * np.ones((1, 8, 8, 3), np.float32)
  return tf.data.Dataset.from_tensor_slices({'x': images, 'y': labels}).batch(5)


def test_replay_sees_every_new_example_and_a_fresh_sample_of_the_seen_ones_each_epoch():
  new, seen = np.arange(1000, 1010), np.arange(100)
  ds = data.replay_dataset(_labelled(new), _labelled(seen), _layer, batch_size=6,
                           num_new=10, num_seen=100, replay=0.2, seed=1)
  assert data.replay_epoch_size(10, 100, 0.2) == 30
  assert int(ds.cardinality()) == 5  # 30 examples in batches of 6
  epochs = [np.concatenate([y.numpy() for _, y in ds]) for _ in range(2)]
  for labels in epochs:
    assert sorted(labels[labels >= 1000]) == list(new)  # each new example once
    old = labels[labels < 1000]
    assert len(old) == 20 and len(set(old)) == 20
  first, second = (set(labels[labels < 1000]) for labels in epochs)
  assert first != second  # another sample of the seen examples
  assert min(np.flatnonzero(epochs[0] >= 1000)) < 20  # mixed in, not all at the end


def test_replay_keeps_at_least_one_seen_example():
  assert data.replay_epoch_size(10, 3, 0.01) == 11


def _halves(n, width=16):
  """Image i: left half i, right half i + 1000, so column 0 tells a mirrored image
  whatever the crop (a crop moves it by at most PAD_PIXELS < width / 2)."""
  labels = np.arange(n, dtype=np.int64)
  images = np.zeros((n, 8, width, 3), np.float32)
  images[:, :, :width // 2] = labels[:, None, None, None]
  images[:, :, width // 2:] = labels[:, None, None, None] + 1000
  return tf.data.Dataset.from_tensor_slices({'x': images, 'y': labels}).batch(5)


def _mirrored_by_epoch(ds, epochs, steps):
  """{label: [mirrored in epoch 0, in epoch 1, ...]} from a multi-epoch dataset."""
  batches = list(ds)
  assert len(batches) == epochs * steps
  seen = {}
  for step, (x, y) in enumerate(batches):
    for image, label in zip(x.numpy(), y.numpy()):
      assert image[0, 0, 0] in (label, label + 1000)
      seen.setdefault(int(label), [None] * epochs)[step // steps] = image[0, 0, 0] >= 1000
  return seen


def test_alternating_flips_mirror_each_image_in_every_other_epoch():
  ds = data.make_dataset(_halves(40), _layer, batch_size=8, training=True, seed=1,
                         num_examples=40, training_epochs=4)
  seen = _mirrored_by_epoch(ds, epochs=4, steps=5)
  assert len(seen) == 40  # every image in every epoch (40 = 5 full batches)
  for label, flips in seen.items():
    assert flips == [flips[0], not flips[0]] * 2, (label, flips)
  first = [flips[0] for flips in seen.values()]
  assert 10 <= sum(first) <= 30  # the first epoch mirrors about half, not all or none


def test_random_flips_do_not_alternate():
  ds = data.make_dataset(_halves(40), _layer, batch_size=8, training=True, seed=1)
  epochs = [{int(y): x[0, 0, 0] >= 1000 for xs, ys in ds for x, y in zip(xs.numpy(), ys.numpy())}
            for _ in range(4)]
  alternating = [label for label in epochs[0]
                 if [e[label] for e in epochs] == [epochs[0][label], not epochs[0][label]] * 2]
  assert len(alternating) < 20  # one in eight by chance


def test_alternating_epochs_reshuffle_and_transform_each_example_once():
  calls = tf.Variable(0, dtype=tf.int64)

  def counting_layer(batch):
    calls.assign_add(tf.size(batch['y'], out_type=tf.int64))
    return _layer(batch)

  ds = data.make_dataset(_halves(40), counting_layer, batch_size=8, training=True, seed=1,
                         num_examples=40, training_epochs=3)
  orders = np.concatenate([y.numpy() for _, y in ds]).reshape(3, 40)
  assert int(calls.numpy()) == 40  # the cache serves the later epochs
  assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
  for order in orders:
    assert sorted(order) == list(range(40))


def test_fit_reads_an_alternating_dataset_epoch_by_epoch_to_its_end():
  import warnings
  import keras
  model = keras.Sequential([keras.Input((8, 16, 3)), keras.layers.Flatten(),
                            keras.layers.Dense(40, activation='softmax')])
  model.compile('sgd', 'sparse_categorical_crossentropy')
  ds = data.make_dataset(_halves(40), _layer, batch_size=8, training=True, seed=1,
                         num_examples=40, training_epochs=3)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    history = model.fit(ds, epochs=3, steps_per_epoch=5, verbose=0)
  assert not [str(w.message) for w in caught if 'ran out of data' in str(w.message)]
  assert len(history.history['loss']) == 3
