"""The exported model under concurrent load, loaded as TF Serving loads it.

8 threads share one TF1 session (TF Serving's request threads do) and send
2,000 requests drawn from a mix of good JPEGs and PNGs of several sizes,
modes and batch sizes (empty batches too), on both signatures, and bad ones:
empty strings, text, truncated files and decompression bombs
(fixtures.load_requests). Every good request must give exactly what the same
request gave alone, before the load; every bad one its own clear error; and
the process's resident memory must stay bounded.
benchmarks/serving_latency.py --load times the same mix.
"""

import concurrent.futures
import resource
import time

import numpy as np
import pytest
import tensorflow as tf

import fixtures
from components import features
from tfx_pipeline import config as config_lib

THREADS = 8
REQUESTS = 2000
MEMORY_GROWTH_LIMIT_MB = 200


def test_the_expected_errors_name_the_configured_limit():
  assert f'over the limit {config_lib.MAX_IMAGE_PIXELS} ' in fixtures.LOAD_ERRORS['png bomb']


def test_eight_threads_get_the_single_threaded_answers_and_clear_errors(tf1_exported):
  good_requests, bad_requests = fixtures.load_requests()
  # The answers of the same session, one request at a time, before any load.
  expected = [tf1_exported(signature, values) for signature, _, values in good_requests]
  for (_, names, _), out in zip(good_requests, expected):
    assert out[features.PROBABILITIES].shape == (len(names), 10)
  schedule = fixtures.load_schedule(REQUESTS, len(good_requests), len(bad_requests))

  def send(item):
    kind, index = item
    signature, _, values = (good_requests if kind == 'good' else bad_requests)[index]
    start = time.perf_counter()
    try:
      return item, tf1_exported(signature, values), time.perf_counter() - start
    except tf.errors.InvalidArgumentError as e:
      return item, e, time.perf_counter() - start

  start = time.perf_counter()
  with fixtures.RssWatch() as memory:
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
      results = list(pool.map(send, schedule))
  seconds = time.perf_counter() - start
  latencies = np.array([r[2] for r in results]) * 1e3
  print(f'\n{REQUESTS} requests from {THREADS} threads in {seconds:.1f} s '
        f'({REQUESTS / seconds:.0f}/s; p50 {np.percentile(latencies, 50):.1f} ms, '
        f'p99 {np.percentile(latencies, 99):.1f} ms); resident memory '
        f'{memory.start_mb:.0f} MB before, peak {memory.peak_mb:.0f} MB '
        f'(+{memory.growth_mb:.0f} MB); ru_maxrss '
        f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB')

  answered = {'good': 0, 'bad': 0}
  for (kind, index), out, _ in results:
    answered[kind] += 1
    if kind == 'good':
      assert not isinstance(out, Exception), f'{good_requests[index][:2]}: {out}'
      for name in (features.PROBABILITIES, features.CLASS_IDS, features.CLASS_NAMES):
        np.testing.assert_array_equal(out[name], expected[index][name],
                                      err_msg=str(good_requests[index][:2]))
    else:
      signature, (bad_kind,), _ = bad_requests[index]
      assert isinstance(out, tf.errors.InvalidArgumentError), \
          f'{signature} {bad_kind} was answered: {out}'
      with pytest.raises(tf.errors.InvalidArgumentError, match=fixtures.LOAD_ERRORS[bad_kind]):
        raise out
  assert min(answered.values()) > REQUESTS * 0.2  # both kinds, in numbers
  assert memory.growth_mb < MEMORY_GROWTH_LIMIT_MB, \
      f'resident memory grew by {memory.growth_mb:.0f} MB under load'
