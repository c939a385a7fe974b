"""Serving latency: the exported `serving_default` signature vs the bare Keras model.

    .venv/bin/python benchmarks/serving_latency.py          # or: make bench

Both sides are the `cifar` AlexNet at the cpu preset's default
hyperparameters, saved, reloaded with TF2's `tf.saved_model.load` and called
in this process through their signatures, so they pay the same calling
overhead (TF Serving loads through a TF1 session instead; ServingCheck checks
that path, not its speed):

- serving: `serving_default(image_bytes)` on CIFAR-sized (32x32) JPEG and PNG
  bytes: check format -> TFT transform graph (decode, resize, normalize) ->
  model -> probabilities, class ids, class names;
- bare: the Keras model alone on the already-preprocessed float32 tensor
  (the TFT layer's output for the same images).

- serving + flip: the same export with test-time flip (the presets' default,
  TrainConfig.test_time_flip): the network also runs on each image's mirror
  and the probabilities are averaged. `flip_b<batch>_cost` in the JSON is its
  p50 over serving_default's.

Calls alternate between the sides in short rounds, so load from other
processes falls on all alike. The last line is JSON with `batch1_ratio` =
serving p50 / bare p50 at batch 1 (goal: <= 1.2). Runs in about 2 minutes on
2 cores; docs/serving.md records the measured table.

`--ablation` adds rows that each undo one serving change, to show what it
costs or buys: `w/o batch-of-one` (decode always through tf.map_fn),
`w/o resize skip` (resize even at the target size) and `w/o format check`
(no JPEG/PNG check before decoding); and a second table timing the decode
step alone in its four versions, where the differences are not drowned by the
model's run-to-run noise. Fewer calls per row; under 3 minutes. It also has a
`w/o size check` row (no decompression-bomb check before decoding).

`--load` times the model under concurrent load instead, loaded as TF Serving
loads it (a TF1 session, shared by every request thread): `--requests`
(default 2,000) requests drawn from the mix that tests/test_serving_load.py
sends (tests/fixtures.py: good JPEGs and PNGs from 17x45 to 480x640, alone and
in batches of 3 and 8, on both signatures; 30% bad: empty strings, text,
truncated files, decompression bombs), first from one thread, then from
`--threads` (default 8). Every answer is checked against the single-threaded
one and every error against its expected message. It reports throughput
(requests and good images per second), p50/p99 latency of good and bad
requests, and the peak resident memory over its start.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import re
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence
from unittest import mock

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'tests'))  # fixtures.py: the load mix, bombs, Tf1Model

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fixtures  # noqa: E402
from components import features  # noqa: E402
from components import serving  # noqa: E402
from components import transform  # noqa: E402
from models import alexnet  # noqa: E402
from tfx_pipeline import config  # noqa: E402
from tuning.search_space import search_space  # noqa: E402

IMAGE_SIZE = 32
ANALYZE_IMAGES = 256  # images the transform's mean/std are computed on
BATCH_SIZES = (1, 32)
FLIP_SIDE = 'serving + flip'  # the export with test-time flip (the presets' default)
# (rounds, calls per side per round): ~1500 samples at batch 1, ~180 at batch 32.
SCHEDULE = {1: (150, 10), 32: (60, 3)}
ABLATION_SCHEDULE = {1: (120, 10), 32: (40, 3)}  # five sides instead of two
WARMUP_CALLS = 20


def make_images(n: int, seed: int = 0) -> List[bytes]:
  """Smooth random 32x32 RGB images, JPEG-encoded (every fifth one PNG), like CIFAR's."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
  images = tf.image.resize(coarse, [IMAGE_SIZE, IMAGE_SIZE]).numpy()
  images = np.clip(images + rng.normal(0, 8, images.shape), 0, 255).astype(np.uint8)
  return [(tf.io.encode_png(im) if i % 5 == 4 else tf.io.encode_jpeg(im, quality=90)).numpy()
          for i, im in enumerate(images)]


class BareModel(tf.Module):
  """The Keras model alone behind a signature: float32 [None, size, size, 3] -> probabilities."""

  def __init__(self, model):
    super().__init__(name='bare')
    self.model = model

  @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)])
  def predict(self, images):
    return {features.PROBABILITIES: self.model(images, training=False)}


def decode_image_always_resized(encoded: tf.Tensor, size: int) -> tf.Tensor:
  """transform.decode_image without the same-size shortcut (as before it)."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.cast(tf.ensure_shape(image, [None, None, 3]), tf.float32)
  return tf.reshape(tf.image.resize(image, [size, size], antialias=True), [size, size, 3])


def decode_images_without(change: str):
  """transform.decode_images with one ('batch-of-one', 'resize skip') or 'both' speed-ups undone."""
  def decode(encoded: tf.Tensor, size: int) -> tf.Tensor:
    encoded = tf.reshape(encoded, [-1])
    one = decode_image_always_resized if change in ('resize skip', 'both') \
        else transform.decode_image
    many = lambda: tf.map_fn(lambda e: one(e, size), encoded,  # noqa: E731
                             fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
    if change in ('batch-of-one', 'both'):
      return many()
    return tf.cond(tf.equal(tf.size(encoded), 1), lambda: one(encoded[0], size)[tf.newaxis], many)
  return decode


DECODE_VERSIONS = {
    'before (map_fn, resize)': decode_images_without('both'),
    'batch-of-one only': decode_images_without('resize skip'),
    'resize skip only': decode_images_without('batch-of-one'),
    'both (as shipped)': transform.decode_images,
}


def decode_ablation(blobs: Sequence[bytes]) -> Dict[tuple, Dict[str, float]]:
  """Wall/CPU time of the decode step alone (decode_images in a tf.function), per version.

  Also checks that every version gives bit-identical pixels.
  """
  results = {}
  for batch, rounds in ((1, 200), (32, 40)):
    groups = [tf.constant(blobs[i:i + batch]) for i in range(0, len(blobs), batch)]
    fns = {name: tf.function(lambda x, d=d: d(x, IMAGE_SIZE),
                             input_signature=[tf.TensorSpec([None], tf.string)])
           for name, d in DECODE_VERSIONS.items()}
    reference = [fns['before (map_fn, resize)'](g).numpy() for g in groups]
    for fn in fns.values():
      for g, want in zip(groups, reference):
        np.testing.assert_array_equal(fn(g).numpy(), want)
    times = interleaved_latencies(
        {name: lambda i, fn=fn: fn(groups[i % len(groups)]) for name, fn in fns.items()},
        rounds, 10)
    for name, seconds in times.items():
      results[(name, batch)] = summarize(seconds, batch)
  return results


def analyze(workdir: str, name: str, images: Sequence[bytes], decode=None):
  """A TFT transform graph on `images`; `decode` replaces transform.decode_images."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  patch = mock.patch.object(transform, 'decode_images', decode) if decode \
      else contextlib.nullcontext()
  with patch:
    out = transform.analyze_images(images, [i % 10 for i in range(len(images))], IMAGE_SIZE,
                                   os.path.join(workdir, name))
  return tft.TFTransformOutput(out)


def export_and_load(model, tft_output, path: str, check: Optional[str] = None,
                    test_time_flip: bool = False):
  """serving.export, reloaded; `check` names a check exported without: 'format' or 'size'."""
  patch = {
      None: contextlib.nullcontext(),
      'format': mock.patch.object(serving, 'check_image_format', lambda encoded, source: encoded),
      'size': mock.patch.object(serving, 'check_image_size',
                                lambda encoded, max_pixels, source: encoded),
  }[check]
  with patch:
    serving.export(model, tft_output, [f'class_{i}' for i in range(10)], path,
                   test_time_flip=test_time_flip)
  return tf.saved_model.load(path).signatures[features.SERVING_SIGNATURE]


def build_sides(workdir: str, ablation: bool):
  """Exports and reloads every side; returns ({name: signature}, bare signature, TFT, hp, params)."""
  images = make_images(ANALYZE_IMAGES, seed=1)
  tft_output = analyze(workdir, 'transform', images)
  hp = search_space(config.cpu().tune, 'cifar')  # the defaults: what --no-tune trains
  model = alexnet.build_model(hp, 'cifar', IMAGE_SIZE, 10,
                              conv_widths=config.cpu().model.conv_widths)
  sides = {'serving_default': export_and_load(model, tft_output, os.path.join(workdir, 's')),
           FLIP_SIDE: export_and_load(model, tft_output, os.path.join(workdir, 'flip'),
                                      test_time_flip=True)}
  if ablation:
    for i, change in enumerate(('batch-of-one', 'resize skip')):
      sides[f'  w/o {change}'] = export_and_load(
          model, analyze(workdir, f'transform_{i}', images, decode_images_without(change)),
          os.path.join(workdir, f'serving_{i}'))
    for check in ('format', 'size'):
      sides[f'  w/o {check} check'] = export_and_load(
          model, tft_output, os.path.join(workdir, f'serving_no_{check}_check'), check=check)
  bare = BareModel(model)
  bare_dir = os.path.join(workdir, 'bare')
  tf.saved_model.save(bare, bare_dir, signatures={'serving_default': bare.predict})
  bare_fn = tf.saved_model.load(bare_dir).signatures['serving_default']
  return sides, bare_fn, tft_output, hp, model.count_params()


def preprocess(tft_output, blobs: Sequence[bytes]) -> tf.Tensor:
  """The TFT layer's output for `blobs`: what the bare model is fed."""
  layer = tft_output.transform_features_layer()
  raw = {features.IMAGE_KEY: tf.constant([[b] for b in blobs])}
  return layer(raw)[features.TRANSFORMED_IMAGE_KEY]


def interleaved_latencies(calls: Dict[str, Callable[[int], object]], rounds: int,
                          per_round: int) -> Dict[str, np.ndarray]:
  """[calls, 2] wall and process-CPU seconds per call of each function, alternating
  between them every `per_round` calls.

  CPU time counts every thread of this process and none of the others', so it
  moves less than wall time when other jobs share the cores.
  """
  samples = {name: [] for name in calls}
  for name, fn in calls.items():
    for i in range(WARMUP_CALLS):
      fn(i)
  for r in range(rounds):
    for name, fn in calls.items():
      for i in range(per_round):
        wall, cpu = time.perf_counter(), time.process_time()
        fn(r * per_round + i)
        samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
  return {name: np.array(s) for name, s in samples.items()}


def summarize(seconds: np.ndarray, batch: int) -> Dict[str, float]:
  p50, p99 = np.percentile(seconds[:, 0], [50, 99]) * 1e3
  cpu_p50 = np.percentile(seconds[:, 1], 50) * 1e3
  return {'p50_ms': round(float(p50), 3), 'p99_ms': round(float(p99), 3),
          'cpu_p50_ms': round(float(cpu_p50), 3),
          'images_per_s': round(batch / (p50 / 1e3), 1), 'calls': int(len(seconds))}


def time_sides(sides, bare, tft_output, schedule) -> Dict[tuple, Dict[str, float]]:
  """{(side, batch): latency summary}, every side checked against the bare model first."""
  blobs = make_images(64, seed=2)
  results = {}
  for batch in BATCH_SIZES:
    groups = [blobs[i:i + batch] for i in range(0, len(blobs), batch)]
    raw = [tf.constant(g) for g in groups]
    pre = [preprocess(tft_output, g) for g in groups]
    want = bare(images=pre[0])[features.PROBABILITIES].numpy()
    mirrored = bare(images=tf.image.flip_left_right(pre[0]))[features.PROBABILITIES].numpy()
    calls = {}
    for name, fn in sides.items():
      got = fn(image_bytes=raw[0])[features.PROBABILITIES].numpy()
      # Same model, same preprocessing (and the mirror's answer averaged in).
      np.testing.assert_allclose(got, (want + mirrored) / 2 if name == FLIP_SIDE else want,
                                 atol=1e-4)
      calls[name] = lambda i, fn=fn: fn(image_bytes=raw[i % len(raw)])
    calls['bare keras'] = lambda i: bare(images=pre[i % len(pre)])
    for name, seconds in interleaved_latencies(calls, *schedule[batch]).items():
      results[(name, batch)] = summarize(seconds, batch)
  return results


def print_tables(results, decode_results) -> None:
  print(f'{"path":20s} {"batch":>5s} {"p50 ms":>8s} {"p99 ms":>8s} {"cpu p50 ms":>10s} '
        f'{"images/s":>9s} {"calls":>6s}')
  for (name, batch), r in results.items():
    print(f'{name:20s} {batch:5d} {r["p50_ms"]:8.2f} {r["p99_ms"]:8.2f} '
          f'{r["cpu_p50_ms"]:10.2f} {r["images_per_s"]:9.0f} {r["calls"]:6d}')
  if decode_results:
    print('\ndecode step alone (same pixels in every version):')
    print(f'{"decode_images":24s} {"batch":>5s} {"p50 ms":>8s} {"cpu p50 ms":>10s}')
    for (name, batch), r in decode_results.items():
      print(f'{name:24s} {batch:5d} {r["p50_ms"]:8.3f} {r["cpu_p50_ms"]:10.3f}')


def json_summary(results, decode_results) -> Dict[str, float]:
  """The ratios first, then every p50/p99 under a flat key."""
  summary = {f'batch{b}_ratio': round(results[('serving_default', b)]['p50_ms'] /
                                      results[('bare keras', b)]['p50_ms'], 3)
             for b in BATCH_SIZES}
  summary.update({f'flip_b{b}_cost': round(results[(FLIP_SIDE, b)]['p50_ms'] /
                                            results[('serving_default', b)]['p50_ms'], 3)
                  for b in BATCH_SIZES})
  for (name, batch), r in results.items():
    key = {'serving_default': 'serving', 'bare keras': 'bare', FLIP_SIDE: 'serving_flip'}.get(
        name, name.strip().replace('w/o ', 'without_').replace(' ', '_').replace('-', '_'))
    summary.update({f'{key}_b{batch}_{k}': v for k, v in r.items() if k != 'calls'})
  for (name, batch), r in decode_results.items():
    key = 'decode_' + name.split(' (')[0].replace(' ', '_').replace('-', '_')
    summary[f'{key}_b{batch}_p50_ms'] = r['p50_ms']
  return summary


# ---------------------------------------------------------------- concurrent load

def export_tf1(workdir: str):
  """The serving side only, exported and loaded as TF Serving loads it; (model, hp, params)."""
  tft_output = analyze(workdir, 'transform', make_images(ANALYZE_IMAGES, seed=1))
  hp = search_space(config.cpu().tune, 'cifar')
  model = alexnet.build_model(hp, 'cifar', IMAGE_SIZE, 10,
                              conv_widths=config.cpu().model.conv_widths)
  path = serving.export(model, tft_output, [f'class_{i}' for i in range(10)],
                        os.path.join(workdir, 'serving'))
  return fixtures.Tf1Model(path), hp, model.count_params()


def run_load(call, good_requests, bad_requests, expected, schedule, threads: int):
  """Sends `schedule` from `threads` threads; checks every answer; returns the figures."""
  def send(item):
    kind, index = item
    signature, _, values = (good_requests if kind == 'good' else bad_requests)[index]
    start = time.perf_counter()
    try:
      out = call(signature, values)
    except tf.errors.InvalidArgumentError as e:
      out = e
    return item, out, time.perf_counter() - start

  start = time.perf_counter()
  with fixtures.RssWatch() as memory:
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
      results = list(pool.map(send, schedule))
  wall = time.perf_counter() - start
  latencies = {'good': [], 'bad': []}
  images = 0
  for (kind, index), out, seconds in results:
    latencies[kind].append(seconds * 1e3)
    if kind == 'good':
      names = good_requests[index][1]
      if isinstance(out, Exception):
        raise AssertionError(f'good request {names} failed under load: {out}')
      np.testing.assert_array_equal(out[features.PROBABILITIES],
                                    expected[index][features.PROBABILITIES])
      images += len(names)
    else:
      bad_kind = bad_requests[index][1][0]
      if not (isinstance(out, tf.errors.InvalidArgumentError)
              and re.search(fixtures.LOAD_ERRORS[bad_kind], out.message)):
        raise AssertionError(f'bad request {bad_kind} did not get its error: {out}')
  everything = latencies['good'] + latencies['bad']
  return {
      'threads': threads, 'requests': len(schedule), 'seconds': round(wall, 2),
      'requests_per_s': round(len(schedule) / wall, 1), 'images_per_s': round(images / wall, 1),
      **{f'{k}_p{q}_ms': round(float(np.percentile(v, q)), 2)
         for k, v in (('all', everything), ('good', latencies['good']),
                      ('bad', latencies['bad'])) for q in (50, 99)},
      'rss_start_mb': round(memory.start_mb), 'rss_growth_mb': round(memory.growth_mb),
  }


def load_benchmark(workdir: str, requests: int, threads: int):
  model, hp, params = export_tf1(workdir)
  good_requests, bad_requests = fixtures.load_requests()
  # Single-threaded answers first: the reference, and every path warmed up.
  expected = [model(signature, values) for signature, _, values in good_requests]
  schedule = fixtures.load_schedule(requests, len(good_requests), len(bad_requests))
  rows = [run_load(model, good_requests, bad_requests, expected, schedule, n)
          for n in (1, threads)]
  model.close()
  return rows, hp, params


def print_load(rows) -> None:
  print(f'{"threads":>7s} {"requests":>8s} {"seconds":>7s} {"req/s":>6s} {"images/s":>8s} '
        f'{"p50 ms":>7s} {"p99 ms":>7s} {"good p99":>8s} {"bad p99":>7s} {"RSS +MB":>7s}')
  for r in rows:
    print(f'{r["threads"]:7d} {r["requests"]:8d} {r["seconds"]:7.1f} {r["requests_per_s"]:6.0f} '
          f'{r["images_per_s"]:8.0f} {r["all_p50_ms"]:7.1f} {r["all_p99_ms"]:7.1f} '
          f'{r["good_p99_ms"]:8.1f} {r["bad_p99_ms"]:7.1f} {r["rss_growth_mb"]:7d}')


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--ablation', action='store_true',
                      help='also time the serving path without each of its changes')
  parser.add_argument('--load', action='store_true',
                      help='time the TF1-session export under concurrent mixed requests')
  parser.add_argument('--requests', type=int, default=2000, help='--load: requests per run')
  parser.add_argument('--threads', type=int, default=8, help='--load: request threads')
  args = parser.parse_args(argv)
  start = time.time()
  if args.load:
    with tempfile.TemporaryDirectory() as workdir:
      rows, hp, params = load_benchmark(workdir, args.requests, args.threads)
    print(f'cifar AlexNet, cpu-preset defaults {hp.values} ({params:,} parameters), '
          'TF1 session (as TF Serving loads it), 70% good requests')
    print(f'TF {tf.__version__}, {os.cpu_count()} CPUs, load average at the end '
          f'{os.getloadavg()[0]:.1f}')
    print_load(rows)
    print(json.dumps({'load': rows, 'seconds': round(time.time() - start, 1)}))
    return
  with tempfile.TemporaryDirectory() as workdir:
    sides, bare, tft_output, hp, params = build_sides(workdir, args.ablation)
    results = time_sides(sides, bare, tft_output,
                         ABLATION_SCHEDULE if args.ablation else SCHEDULE)
  decode_results = decode_ablation(make_images(64, seed=2)) if args.ablation else {}
  print(f'cifar AlexNet, cpu-preset defaults {hp.values} ({params:,} parameters), '
        f'{IMAGE_SIZE}x{IMAGE_SIZE} input')
  print(f'TF {tf.__version__}, {os.cpu_count()} CPUs, load average at the end '
        f'{os.getloadavg()[0]:.1f}')
  print_tables(results, decode_results)
  summary = json_summary(results, decode_results)
  summary['seconds'] = round(time.time() - start, 1)
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
