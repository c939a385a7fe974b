"""The image-tree scan: ImageFolder's layout, minus everything that does not belong."""

import os

import pytest

import fixtures
from components.example_gen import sources


def test_clean_tree_scan_agrees_with_tfds_image_folder(tmp_path):
  import tensorflow_datasets as tfds
  root = fixtures.make_image_tree(str(tmp_path), per_class=3, splits=('train', 'test'),
                                  classes=('b', 'a', 'c'))
  scan = sources.scan_image_tree(root)
  builder = tfds.ImageFolder(root)
  assert list(scan.class_names) == builder.info.features['label'].names == ['a', 'b', 'c']
  assert set(scan.splits) == set(builder.info.splits.keys())
  ours = {(f.split, scan.class_names[f.label], os.path.join(root, f.relpath)) for f in scan.files}
  theirs = set()
  for split in builder.info.splits.keys():
    ds = builder.as_dataset(split=split, decoders={'image': tfds.decode.SkipDecoding()})
    for ex in tfds.as_numpy(ds):
      theirs.add((split, builder.info.features['label'].int2str(ex['label']),
                  ex['image/filename'].decode()))
  assert ours == theirs
  assert scan.ignored == ()


def test_messy_tree_keeps_images_and_names_every_ignored_entry(tmp_path):
  outside = tmp_path / 'secret.jpg'
  outside.write_bytes(b'outside the tree')
  expected = fixtures.make_messy_tree(str(tmp_path / 'tree'), str(outside))
  scan = sources.scan_image_tree(str(tmp_path / 'tree'))
  assert list(scan.class_names) == expected['classes']
  ignored = {path for path, _ in scan.ignored}
  assert ignored == expected['ignored']
  kept = {f.relpath for f in scan.files}
  assert expected['bad'] <= kept  # decodability is the executor's check
  assert len(kept) == expected['good'] + len(expected['bad'])
  assert not any('escape' in p or '.git' in p for p in kept)
  reasons = dict(scan.ignored)
  assert reasons['train/dog/escape.jpg'] == 'symlink out of the tree'
  assert reasons['train/empty_class'] == 'empty class folder'


def test_symlink_inside_the_tree_is_followed(tmp_path):
  root = fixtures.make_image_tree(str(tmp_path), per_class=2, classes=('a', 'b'))
  target = os.path.join(root, 'train', 'a', '0000.jpg')
  os.symlink(target, os.path.join(root, 'train', 'b', 'link.jpg'))
  relpaths = {f.relpath for f in sources.scan_image_tree(root).files}
  assert 'train/b/link.jpg' in relpaths


def test_reading_refuses_paths_that_escape(tmp_path):
  root = fixtures.make_image_tree(str(tmp_path / 'tree'), per_class=1, classes=('a', 'b'))
  (tmp_path / 'outside.jpg').write_bytes(b'x')
  with pytest.raises(sources.SourceError, match='outside'):
    sources.read_file_in_tree(root, '../outside.jpg')
  assert sources.read_file_in_tree(root, 'train/a/0000.jpg')[:2] == b'\xff\xd8'


def test_missing_dir_and_flat_layout_fail_with_advice(tmp_path):
  with pytest.raises(sources.SourceError, match='does not exist'):
    sources.scan_image_tree(str(tmp_path / 'nope'))
  flat = tmp_path / 'flat'
  fixtures.make_image_tree(str(flat), per_class=1, classes=('a', 'b'), splits=('.',))
  with pytest.raises(sources.SourceError, match='class folders under'):
    sources.scan_image_tree(str(flat))


@pytest.mark.parametrize('splits, train, eval_split, unused', [
    (['train'], 'train', None, ()),
    (['train', 'test'], 'train', None, ('test',)),
    (['train', 'validation', 'test'], 'train', 'validation', ('test',)),
    (['images'], 'images', None, ()),
    (['images', 'test'], 'images', None, ('test',)),
])
def test_split_plan(splits, train, eval_split, unused):
  plan = sources.plan_splits(splits)
  assert (plan.train, plan.eval, plan.unused) == (train, eval_split, unused)


def test_split_plan_refuses_ambiguous_trees():
  with pytest.raises(sources.SourceError, match='train'):
    sources.plan_splits(['a', 'b'])


def test_hash_split_is_deterministic_and_near_the_requested_share():
  ids = [f'train/cls/{i:05d}.jpg' for i in range(20_000)]
  first = [sources.split_for(i, 10) for i in ids]
  assert first == [sources.split_for(i, 10) for i in ids]
  share = first.count('eval') / len(ids)
  assert 0.09 < share < 0.11
  reseeded = [sources.split_for(i, 10, seed=1) for i in ids]
  assert reseeded != first


def test_cap_per_split_is_a_stable_sample():
  files = [sources.ImageFile('train', i % 2, f'train/c/{i}.jpg') for i in range(50)] + \
          [sources.ImageFile('val', 0, f'val/c/{i}.jpg') for i in range(5)]
  kept = sources.cap_per_split(files, 10)
  assert sum(f.split == 'train' for f in kept) == 10
  assert sum(f.split == 'val' for f in kept) == 5
  assert set(kept) == set(sources.cap_per_split(list(reversed(files)), 10))


def test_fingerprint_changes_when_a_file_changes(tmp_path):
  root = fixtures.make_image_tree(str(tmp_path), per_class=1, classes=('a', 'b'))
  before = sources.fingerprint_tree(root)
  assert before == sources.fingerprint_tree(root)
  with open(os.path.join(root, 'train', 'a', 'new.jpg'), 'wb') as f:
    f.write(b'x')
  assert sources.fingerprint_tree(root) != before


def test_hash_order_mixes_classes_and_is_stable():
  files = [sources.ImageFile('train', c, f'train/{c}/{i}.jpg') for c in range(3) for i in range(30)]
  ordered = sources.hash_order(files)
  assert ordered == sources.hash_order(list(reversed(files)))
  assert len({f.label for f in ordered[:10]}) == 3
