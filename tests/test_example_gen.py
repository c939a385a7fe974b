"""ImageExampleGen's executor: every image decode-checked, bad ones named, counts recorded."""

import dataclasses
import glob
import json
import os

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

import fixtures
from components import features
from components.example_gen import executor
from tfx_pipeline import config
from tfx_pipeline.config import DataConfig


def run_executor(tmp_path, data: DataConfig):
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  executor.Executor().Do({}, {executor.EXAMPLES_KEY: [examples]},
                         {executor.DATA_CONFIG_KEY: json.dumps(dataclasses.asdict(data))})
  return examples


def read_split(examples, split):
  files = glob.glob(os.path.join(examples.uri, f'Split-{split}', '*.gz'))
  records = tf.data.TFRecordDataset(files, compression_type='GZIP')
  return [tf.train.Example.FromString(r.numpy()) for r in records]


@pytest.fixture(scope='module')
def messy(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('messy')
  (tmp / 'outside.jpg').write_bytes(fixtures.encode(
      fixtures.synthetic_image(0, __import__('numpy').random.default_rng(0)), 'jpg'))
  expected = fixtures.make_messy_tree(str(tmp / 'tree'), str(tmp / 'outside.jpg'))
  examples = run_executor(tmp, DataConfig(image_dir=str(tmp / 'tree'), eval_percent=30))
  return examples, expected


def test_bad_images_are_skipped_listed_and_counted(messy):
  examples, expected = messy
  bad_lines = open(os.path.join(examples.uri, features.BAD_IMAGES_FILE)).read().splitlines()
  assert {line.split('\t')[1] for line in bad_lines} == expected['bad']
  assert all(line.split('\t')[2] for line in bad_lines)  # a reason for each
  counts = json.load(open(os.path.join(examples.uri, features.COUNTS_FILE)))
  splits = counts['splits']
  assert sum(s['skipped'] for s in splits.values()) == len(expected['bad'])
  assert sum(s['written'] for s in splits.values()) == expected['good']
  for s in splits.values():
    assert s['read'] == s['written'] + s['skipped']
  assert {i['path'] for i in counts['ignored']} == expected['ignored']
  props = examples.mlmd_artifact.custom_properties
  assert props['train_skipped'].int_value + props['eval_skipped'].int_value == \
      len(expected['bad'])
  assert props['ignored_files'].int_value == len(expected['ignored'])


def bad_reasons(examples):
  lines = open(os.path.join(examples.uri, features.BAD_IMAGES_FILE)).read().splitlines()
  return {line.split('\t')[1]: line.split('\t')[2] for line in lines}


def test_images_over_the_pixel_limit_are_skipped_by_their_header_with_size_and_limit(messy):
  examples, expected = messy
  reasons = bad_reasons(examples)
  for path, (height, width) in expected['oversized'].items():
    assert reasons[path] == (f'declares {height}x{width} pixels, over the limit '
                             f'{config.MAX_IMAGE_PIXELS}')
  skipped = json.load(open(os.path.join(examples.uri, features.COUNTS_FILE)))['skipped_files']
  assert {line.split('\t')[1] for line in skipped} >= set(expected['oversized'])


def test_the_pixel_limit_comes_from_the_data_config(messy, tmp_path):
  examples, expected = messy
  tree = os.path.join(os.path.dirname(examples.uri), 'tree')
  raised = run_executor(tmp_path, DataConfig(image_dir=tree, eval_percent=30,
                                             max_image_pixels=5000 * 5000))
  reasons = bad_reasons(raised)
  # The 5000x5000 PNG is a valid image within this limit: decoded and written.
  assert 'train/cat/bomb.png' not in reasons
  assert reasons['train/dog/bomb.jpg'] == \
      'declares 20000x20000 pixels, over the limit 25000000'
  ids = {e.features.feature[features.ID_KEY].bytes_list.value[0].decode()
         for e in read_split(raised, 'train') + read_split(raised, 'eval')}
  assert 'train/cat/bomb.png' in ids


def test_check_image_refuses_a_bomb_before_decoding():
  bomb = fixtures.png_bomb(16000, 16000)
  with fixtures.RssWatch() as memory:
    with pytest.raises(ValueError, match='declares 16000x16000 pixels, over the limit 16777216'):
      executor.check_image(bomb)
  # Decoding it would take 768 MB, and its float32 view four times that.
  assert memory.growth_mb < 100


def test_written_examples_hold_decodable_bytes_labels_and_ids(messy):
  examples, expected = messy
  rows = read_split(examples, 'train') + read_split(examples, 'eval')
  assert len(rows) == expected['good']
  names = json.load(open(os.path.join(examples.uri, features.CLASS_NAMES_FILE)))
  assert names == expected['classes']
  for ex in rows:
    f = ex.features.feature
    image_id = f[features.ID_KEY].bytes_list.value[0].decode()
    label = f[features.LABEL_KEY].int64_list.value[0]
    assert image_id.split('/')[1] == names[label]
    image = tf.io.decode_image(f[features.IMAGE_KEY].bytes_list.value[0], channels=3)
    assert image.shape[:2] == (f[features.HEIGHT_KEY].int64_list.value[0],
                               f[features.WIDTH_KEY].int64_list.value[0])
  ids = {ex.features.feature[features.ID_KEY].bytes_list.value[0].decode() for ex in rows}
  assert {'train/cat/gray.png', 'train/cat/rgba.png', 'train/dog/odd.jpg'} <= ids


def test_split_is_deterministic_by_id(messy, tmp_path):
  examples, _ = messy
  again = run_executor(tmp_path, DataConfig(image_dir=os.path.join(
      os.path.dirname(examples.uri), 'tree'), eval_percent=30))

  def ids(ex, split):
    return sorted(e.features.feature[features.ID_KEY].bytes_list.value[0]
                  for e in read_split(ex, split))
  assert ids(examples, 'eval') == ids(again, 'eval')
  assert ids(examples, 'train') == ids(again, 'train')
  assert ids(examples, 'eval')  # 30% of 20 images: never empty in practice


def test_fail_policy_stops_with_the_list_of_bad_files(messy, tmp_path):
  examples, expected = messy
  tree = os.path.join(os.path.dirname(examples.uri), 'tree')
  with pytest.raises(executor.BadImageError) as info:
    run_executor(tmp_path, DataConfig(image_dir=tree, on_bad_image='fail'))
  for path in expected['bad']:
    assert path in str(info.value)


def test_tfds_source_reads_encoded_images(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  # mock_data ignores sub-split slicing, so read the mocked split as one shard.
  monkeypatch.setattr(executor, 'TFDS_SHARDS', 1)
  with tfds.testing.mock_data(num_examples=40):
    examples = run_executor(tmp_path, DataConfig(tfds_name='cifar10', eval_percent=25))
  rows = read_split(examples, 'train') + read_split(examples, 'eval')
  assert len(rows) == 40
  names = json.load(open(os.path.join(examples.uri, features.CLASS_NAMES_FILE)))
  assert len(names) == 10  # mocked cifar10 names its classes '0'..'9'
  image = tf.io.decode_image(rows[0].features.feature[features.IMAGE_KEY].bytes_list.value[0])
  assert image.shape == (32, 32, 3)



def test_image_facts_describe_pixels_channels_and_format():
  import numpy as np
  gray = np.full((8, 8), 40, np.uint8)
  gray[:4] = 200  # half bright, half dark: luma std 80
  png = fixtures.encode(gray, 'png')
  facts = executor.check_image(png)
  assert (facts.height, facts.width, facts.channels, facts.format) == (8, 8, 1, 'png')
  assert facts.means == pytest.approx((120.0, 120.0, 120.0))
  assert facts.contrast == pytest.approx(80.0, abs=0.5)
  assert facts.encoded_bytes == len(png)
  red = np.zeros((4, 6, 3), np.uint8)
  red[..., 0] = 255
  facts = executor.check_image(fixtures.encode(red, 'png'))
  assert (facts.height, facts.width, facts.channels) == (4, 6, 3)
  assert facts.means == pytest.approx((255.0, 0.0, 0.0)) and facts.contrast == pytest.approx(0)


def test_examples_carry_the_image_facts_for_statistics(messy):
  examples, _ = messy
  example = read_split(examples, 'train')[0]
  f = example.features.feature
  for key in (features.CHANNELS_KEY, features.ENCODED_BYTES_KEY):
    assert f[key].int64_list.value[0] > 0
  assert all(0 <= f[key].float_list.value[0] <= 255 for key in features.MEAN_KEYS)
  assert f[features.CONTRAST_KEY].float_list.value[0] > 0
  assert f[features.FORMAT_KEY].bytes_list.value[0] in (b'jpeg', b'png')
  assert f[features.ENCODED_BYTES_KEY].int64_list.value[0] == \
      len(f[features.IMAGE_KEY].bytes_list.value[0])


def test_a_span_tree_records_its_span_and_prefixes_ids(tmp_path):
  for span in (1, 2):
    fixtures.make_image_tree(str(tmp_path / 'in' / f'span-{span}'), per_class=4,
                             classes=('cat', 'dog'), seed=span)
  examples = run_executor(tmp_path, DataConfig(image_dir=str(tmp_path / 'in' / 'span-{SPAN}'),
                                               eval_percent=50))
  assert examples.span == 2 and examples.get_int_custom_property('span') == 2
  ids = [e.features.feature[features.ID_KEY].bytes_list.value[0].decode()
         for split in ('train', 'eval') for e in read_split(examples, split)]
  assert len(ids) == 8 and all(i.startswith('span-2/train/') for i in ids)
