"""benchmarks/day_two.py's bookkeeping: the spans it cuts and the states it keeps."""

import os

from benchmarks import day_two


def files_under(root):
  return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_a_kept_state_is_a_copy_the_next_day_cannot_change(tmp_path):
  work = tmp_path / 'work'
  (work / 'root' / 'Trainer' / 'model' / '10').mkdir(parents=True)
  (work / 'root' / 'metadata.sqlite').write_bytes(b'after span 1')
  (work / 'root' / 'Trainer' / 'model' / '10' / 'saved_model.pb').write_bytes(b'model')
  (work / 'serving' / '1').mkdir(parents=True)

  state = day_two.keep_state(str(work), 1)

  assert state == str(work / 'after-span-1')
  (work / 'root' / 'metadata.sqlite').write_bytes(b'after span 2')  # rewritten in place
  kept = work / 'after-span-1'
  assert (kept / 'root' / 'metadata.sqlite').read_bytes() == b'after span 1'
  assert (kept / 'root' / 'Trainer' / 'model' / '10' / 'saved_model.pb').read_bytes() == b'model'
  assert (kept / 'serving' / '1').is_dir()


def test_spans_split_the_archive_by_path_with_the_asked_sizes(tmp_path):
  archive = tmp_path / 'archive'
  for c in ('cat', 'dog'):
    (archive / 'train' / c).mkdir(parents=True)
    for i in range(100):
      (archive / 'train' / c / f'{i}.jpg').write_bytes(b'x')

  counts = day_two.make_spans(str(archive), str(tmp_path / 'spans'), [160, 20, 20])

  assert sum(counts.values()) == 200 and set(counts) == {1, 2, 3}
  assert 130 <= counts[1] <= 190  # a hash, not an exact cut
  again = day_two.make_spans(str(archive), str(tmp_path / 'again'), [160, 20, 20])
  assert again == counts
  for span in counts:  # the same files each time: a stable hash of the path
    assert (files_under(tmp_path / 'spans' / f'span-{span}')
            == files_under(tmp_path / 'again' / f'span-{span}'))
