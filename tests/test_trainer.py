"""The Trainer's epoch log: one line per epoch, and a history that survives a resume."""

import json

from components import trainer


def run_epochs(log, epochs, accuracy):
  for epoch in epochs:
    log.on_epoch_begin(epoch)
    log.on_epoch_end(epoch, {'accuracy': accuracy, 'val_accuracy': accuracy})


def test_a_resumed_training_keeps_the_epochs_of_the_killed_one(tmp_path, capsys):
  journal = str(tmp_path / trainer.JOURNAL_FILE)
  first = trainer.EpochLog(epochs=4, images_per_epoch=100, journal=journal)
  run_epochs(first, [0, 1], accuracy=0.5)  # then the process dies
  assert 'Trainer epoch 2/4' in capsys.readouterr().out

  # BackupAndRestore restored the end of epoch 1: epoch 2 runs again, then 3.
  resumed = trainer.EpochLog(epochs=4, images_per_epoch=100, journal=journal)
  run_epochs(resumed, [1, 2, 3], accuracy=0.7)
  assert [r['epoch'] for r in resumed.rows] == [1, 2, 3, 4]
  assert [r['accuracy'] for r in resumed.rows] == [0.5, 0.7, 0.7, 0.7]
  with open(journal) as f:
    assert json.load(f) == resumed.rows


def test_without_a_journal_the_history_is_kept_in_memory():
  log = trainer.EpochLog(epochs=2, images_per_epoch=100)
  run_epochs(log, [0, 1], accuracy=0.5)
  assert [r['epoch'] for r in log.rows] == [1, 2]


def test_a_warm_start_replays_only_when_asked_on_one_worker_with_new_and_seen_files(tmp_path):
  from components import warm_start  # pylint: disable=g-import-not-at-top
  from tfx_pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  source = tmp_path / warm_start.KERAS_DIR
  source.mkdir()
  (source / warm_start.TRAIN_FILES_FILE).write_text(json.dumps(['ex/1/*']))
  warm = warm_start.Plan(str(source), 'warm start from the blessed model')
  cold = warm_start.Plan(None, 'cold start')
  replay = config_lib.TrainConfig(warm_start_replay=0.5)
  window = ['ex/1/*', 'ex/2/*']
  assert trainer.replay_split(window, warm, replay, True) == (['ex/2/*'], ['ex/1/*'])
  assert trainer.replay_split(window, cold, replay, True) == ([], [])
  assert trainer.replay_split(window, warm, config_lib.TrainConfig(), True) == ([], [])
  assert trainer.replay_split(window, warm, replay, False) == ([], [])  # several workers
  assert trainer.replay_split(['ex/1/*'], warm, replay, True) == ([], [])  # nothing new
  assert trainer.replay_split(['ex/3/*'], warm, replay, True) == ([], [])  # nothing seen
