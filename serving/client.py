"""Top-k predictions for image files, from a local SavedModel or from TF Serving.

    python -m serving.client cat.jpg dog.png --model-dir outputs/serving
    python -m serving.client cat.jpg --rest http://localhost:8501 --model-name cifar10
    python -m serving.client cat.jpg --grpc localhost:8500 --model-name cifar10
    python -m serving.client DIR --model-dir outputs/serving --output preds.jsonl

Exactly one target:
  --model-dir DIR   a version directory (holds saved_model.pb) or a serving
                    directory of numbered versions, whose highest one is used;
  --rest URL        TF Serving's REST API: POST /v1/models/<name>:predict with
                    {"instances": [{"image_bytes": {"b64": ...}}]};
  --grpc HOST:PORT  TF Serving's gRPC PredictionService.Predict.

All three call the `serving_default` signature (or `--signature`) with the
files' encoded bytes, so decoding and preprocessing happen in the model, as in
production. The model returns the top-1 class name; names for the other ranks
come from `assets.extra/class_names.json` next to a local model, or from
`--class-names` (that JSON list, or a model directory holding it). Errors
(unreadable file, server not reachable, request refused) print one line and
exit with status 1.

With `--output FILE`, the one positional argument is a folder of any layout,
scored in batches of `--batch-size` with a progress bar on a terminal: one
JSON Lines row per image, the files that could not be scored listed beside
it (serving/batch.py).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import sys
import urllib.error
import urllib.request
from typing import List, Optional, Sequence

import numpy as np

from components.bulk_inference import rows

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TF's start-up chatter is not for CLI users

SIGNATURE = 'serving_default'  # components.features.SERVING_SIGNATURE
INPUT = 'image_bytes'  # components.features.SERVING_INPUT
PROBABILITIES = 'probabilities'
CLASS_NAMES = 'class_names'
CLASS_NAMES_ASSET = os.path.join('assets.extra', 'class_names.json')
JPEG_MAGIC = b'\xff\xd8\xff'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


class ClientError(Exception):
  """A problem the user can fix; main() prints it as one line."""


class RefusedError(ClientError):
  """The model (or the server) refused the request's images: the images' fault."""


@dataclasses.dataclass
class Prediction:
  """What a signature returned for a batch of images."""
  probabilities: np.ndarray  # float32 [images, classes]
  top_names: List[str]  # the model's class_names output (top-1 per image)


# ---------------------------------------------------------------- inputs


def read_image(path: str) -> bytes:
  """The file's bytes, if it is a JPEG or PNG file."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ClientError(f'cannot read {path}: {e.strerror or e}') from e
  if not (data.startswith(JPEG_MAGIC) or data.startswith(PNG_MAGIC)):
    raise ClientError(f'{path} is not a JPEG or PNG file (the model accepts only those)')
  return data


def resolve_model_dir(path: str) -> str:
  """`path` if it holds saved_model.pb, else its highest numbered version that does."""
  if os.path.isfile(os.path.join(path, 'saved_model.pb')):
    return path
  if not os.path.isdir(path):
    raise ClientError(f'model directory {path} does not exist')
  versions = sorted((int(n) for n in os.listdir(path) if n.isascii() and n.isdigit()
                     and os.path.isfile(os.path.join(path, n, 'saved_model.pb'))), reverse=True)
  if not versions:
    raise ClientError(f'{path} holds neither saved_model.pb nor numbered versions with one')
  return os.path.join(path, str(versions[0]))


def read_class_names(path: str) -> Optional[List[str]]:
  """A JSON list of class names: the file `path`, or a model directory's asset; None if absent."""
  if not os.path.isfile(path):
    path = os.path.join(resolve_model_dir(path), CLASS_NAMES_ASSET)
    if not os.path.isfile(path):
      return None
  with open(path) as f:
    return [str(name) for name in json.load(f)]


def error_summary(message: str) -> str:
  """The line of a TF error message that says what went wrong (not where)."""
  noise = ('Graph execution error', 'Detected at node', 'File ', '<stack', '[[', 'Op:')
  lines = [l.strip() for l in message.splitlines()]
  useful = [l for l in lines if l and not l.startswith(noise)]
  return useful[0] if useful else message.strip()


# ---------------------------------------------------------------- targets


def load_local(model_dir: str, signature: str = SIGNATURE):
  """A function images -> Prediction, the SavedModel loaded once."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  loaded = tf.saved_model.load(model_dir)
  if signature not in loaded.signatures:
    raise ClientError(f'{model_dir} has no signature {signature!r}; '
                      f'it has {sorted(loaded.signatures)}')
  function = loaded.signatures[signature]

  def predict(images: Sequence[bytes]) -> Prediction:
    try:
      out = function(**{INPUT: tf.constant(list(images))})
    except tf.errors.InvalidArgumentError as e:
      raise RefusedError(f'the model refused the request: {error_summary(e.message)}') from e
    return Prediction(out[PROBABILITIES].numpy(),
                      [n.decode() for n in out[CLASS_NAMES].numpy()])

  predict.model = loaded  # keeps the SavedModel alive with the function
  return predict


def predict_local(model_dir: str, images: Sequence[bytes], signature: str = SIGNATURE) -> Prediction:
  return load_local(model_dir, signature)(images)


def rest_url(base_url: str, model_name: str, version: Optional[int] = None) -> str:
  base = base_url.rstrip('/')
  if '://' not in base:
    base = 'http://' + base
  versioned = f'/versions/{version}' if version is not None else ''
  return f'{base}/v1/models/{model_name}{versioned}:predict'


def rest_body(images: Sequence[bytes], signature: str = SIGNATURE) -> dict:
  """TF Serving's row format; binary inputs travel as {"b64": ...}."""
  return {'signature_name': signature,
          'instances': [{INPUT: {'b64': base64.b64encode(b).decode('ascii')}} for b in images]}


def parse_rest_response(body: dict) -> Prediction:
  """{"predictions": [{"probabilities": [...], "class_names": "...", ...}, ...]} -> Prediction."""
  rows = body.get('predictions')
  if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
    raise ClientError(f'unexpected REST response (no per-output predictions): {str(body)[:200]}')
  return Prediction(np.array([r[PROBABILITIES] for r in rows], dtype=np.float32),
                    [str(r.get(CLASS_NAMES, '')) for r in rows])


def predict_rest(base_url: str, model_name: str, images: Sequence[bytes],
                 signature: str = SIGNATURE, version: Optional[int] = None,
                 timeout: float = 30.0) -> Prediction:
  url = rest_url(base_url, model_name, version)
  request = urllib.request.Request(url, data=json.dumps(rest_body(images, signature)).encode(),
                                   headers={'Content-Type': 'application/json'}, method='POST')
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      body = json.load(response)
  except urllib.error.HTTPError as e:
    refused = RefusedError if e.code == 400 else ClientError  # TF Serving: invalid argument
    raise refused(f'{url} answered HTTP {e.code}: {error_summary(_rest_error_text(e))}') from e
  except urllib.error.URLError as e:
    raise ClientError(f'cannot reach TF Serving REST API at {url}: {e.reason} '
                      '(is the server running and is port 8501 published?)') from e
  except (TimeoutError, OSError) as e:
    raise ClientError(f'TF Serving REST API at {url} failed: {e}') from e
  return parse_rest_response(body)


def _rest_error_text(error: urllib.error.HTTPError) -> str:
  raw = error.read().decode(errors='replace')
  try:
    return json.loads(raw)['error']
  except (ValueError, KeyError, TypeError):
    return raw[:300] or error.reason


def grpc_request(model_name: str, images: Sequence[bytes], signature: str = SIGNATURE,
                 version: Optional[int] = None):
  """A PredictRequest carrying the images as a string tensor [n]."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  request.inputs[INPUT].CopyFrom(
      tf.make_tensor_proto(list(images), dtype=tf.string, shape=[len(images)]))
  return request


def predict_grpc(target: str, model_name: str, images: Sequence[bytes],
                 signature: str = SIGNATURE, version: Optional[int] = None,
                 timeout: float = 30.0) -> Prediction:
  import grpc  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
  request = grpc_request(model_name, images, signature, version)
  with grpc.insecure_channel(target, options=[('grpc.max_send_message_length', -1),
                                              ('grpc.max_receive_message_length', -1)]) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
      response = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as e:
      if e.code() == grpc.StatusCode.UNAVAILABLE:
        raise ClientError(f'cannot reach TF Serving gRPC API at {target}: {e.details()} '
                          '(is the server running and is port 8500 published?)') from e
      refused = RefusedError if e.code() == grpc.StatusCode.INVALID_ARGUMENT else ClientError
      raise refused(f'{target} refused the request ({e.code().name}): '
                        f'{error_summary(e.details() or "")}') from e
  names = tf.make_ndarray(response.outputs[CLASS_NAMES]) if CLASS_NAMES in response.outputs \
      else [b''] * len(images)
  return Prediction(tf.make_ndarray(response.outputs[PROBABILITIES]).astype(np.float32),
                    [n.decode() for n in names])


# ---------------------------------------------------------------- output


def top_k(probabilities: np.ndarray, k: int) -> List[int]:
  """Class ids of the k largest probabilities, largest first (ties: lower id first)."""
  return rows.top_k(probabilities, k)


def format_prediction(path: str, probabilities: np.ndarray, top_name: str, k: int,
                      class_names: Optional[Sequence[str]] = None) -> str:
  lines = [path]
  for rank, class_id in enumerate(top_k(probabilities, k)):
    if class_names is not None and class_id < len(class_names):
      name = class_names[class_id]
    elif rank == 0 and top_name:
      name = top_name
    else:
      name = f'class {class_id}'
    lines.append(f'  {rank + 1}. {name:<16s} {probabilities[class_id]:.4f}  (id {class_id})')
  return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m serving.client',
      description='Top-k classes of image files, from a SavedModel or TF Serving.')
  parser.add_argument('images', nargs='+',
                      help='JPEG or PNG files; with --output, one folder (any layout)')
  target = parser.add_mutually_exclusive_group(required=True)
  target.add_argument('--model-dir', help='a version dir, or a serving dir (highest version)')
  target.add_argument('--rest', metavar='URL', help='TF Serving REST base, e.g. http://localhost:8501')
  target.add_argument('--grpc', metavar='HOST:PORT', help='TF Serving gRPC, e.g. localhost:8500')
  parser.add_argument('--model-name', default='cifar10', help='MODEL_NAME on the server')
  parser.add_argument('--model-version', type=int, help='a specific version (default: the server\'s)')
  parser.add_argument('--signature', default=SIGNATURE)
  parser.add_argument('--top-k', type=int, default=3)
  parser.add_argument('--class-names', help='JSON list of class names, or a model dir holding one')
  parser.add_argument('--timeout', type=float, default=30.0, help='seconds per request')
  parser.add_argument('--output', metavar='FILE.jsonl',
                      help='score a whole folder: one JSON line per image into FILE.jsonl, '
                           'the files not scored into FILE.skipped.txt')
  parser.add_argument('--batch-size', type=int, default=64,
                      help='with --output: images per request (memory stays bounded)')
  args = parser.parse_args(argv)
  if args.top_k < 1:
    parser.error('--top-k must be at least 1')
  if args.batch_size < 1:
    parser.error('--batch-size must be at least 1')
  if args.output and len(args.images) != 1:
    parser.error('with --output, give one folder to score')
  return args


def target(args: argparse.Namespace):
  """(images -> Prediction for the chosen target, class names or None)."""
  class_names = read_class_names(args.class_names) if args.class_names else None
  if args.class_names and class_names is None:
    raise ClientError(f'no class names in {args.class_names}')
  if args.model_dir:
    model_dir = resolve_model_dir(args.model_dir)
    return load_local(model_dir, args.signature), class_names or read_class_names(model_dir)
  if args.rest:
    return (lambda images: predict_rest(args.rest, args.model_name, images, args.signature,
                                        args.model_version, args.timeout)), class_names
  return (lambda images: predict_grpc(args.grpc, args.model_name, images, args.signature,
                                      args.model_version, args.timeout)), class_names


def run(args: argparse.Namespace) -> str:
  """Reads the images, asks the chosen target, returns the text to print."""
  images = [read_image(p) for p in args.images]
  predict, class_names = target(args)
  prediction = predict(images)
  return '\n'.join(format_prediction(path, p, name, args.top_k, class_names)
                   for path, p, name in zip(args.images, prediction.probabilities,
                                            prediction.top_names))


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  try:
    if args.output:
      from serving import batch  # pylint: disable=g-import-not-at-top
      print(batch.run(args))
    else:
      print(run(args))
  except ClientError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
