"""serving/client.py against a local SavedModel and against in-test TF Serving stand-ins.

TF Serving's binary cannot run here, so the REST and gRPC paths are tested
against small servers on 127.0.0.1 that speak TF Serving's documented formats
(POST /v1/models/<name>[/versions/<v>]:predict with {"instances": [...]} and
{"b64": ...} for binary inputs; PredictionService.Predict with TensorProtos)
and answer with a real reloaded SavedModel exported by components/serving.py.
"""

import base64
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

import fixtures
from components import features, serving
from components.serving_check import check as serving_check
from models import alexnet
from serving import client
from tfx_pipeline import config
from tuning.search_space import search_space

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_NAME = 'cifar10'
V1_NAMES = list(fixtures.CLASS_NAMES)
V2_NAMES = [f'v2_{n}' for n in fixtures.CLASS_NAMES]  # tells the versions apart


@pytest.fixture(scope='module')
def serving_dir(tmp_path_factory, transform_output):
  """A pushed layout: versions 1 and 2 (different class names), plus things to ignore."""
  hp = search_space(config.smoke().tune, 'cifar')
  model = alexnet.build_model(hp, 'cifar', 32, 10)
  model(tf.random.normal([64, 32, 32, 3]) * 2 + 1, training=True)  # non-trivial BatchNorm
  root = tmp_path_factory.mktemp('serving')
  for version, names in (('1', V1_NAMES), ('2', V2_NAMES)):
    serving.export(model, transform_output, names, str(root / version))
    # What the stand-in servers answer with, TF Serving's own loader path answers too.
    result = serving_check.check(str(root / version))
    assert result.ok, result.failure
  (root / '10').mkdir()  # a number without saved_model.pb: not a version
  (root / '.push-tmp-abc').mkdir()  # a push in progress
  return str(root)


@pytest.fixture(scope='module')
def loaded(serving_dir):
  return tf.saved_model.load(os.path.join(serving_dir, '2'))


@pytest.fixture(scope='module')
def image_files(image_tree):
  jpg = os.path.join(image_tree, 'train', 'cat', '0000.jpg')
  png = os.path.join(image_tree, 'train', 'ship', '0004.png')
  assert os.path.exists(jpg) and os.path.exists(png)
  return [jpg, png]


def run_signature(model, signature_name, inputs):
  """What TF Serving does with a request: the signature on the given tensors."""
  return model.signatures[signature_name](**{k: tf.constant(v) for k, v in inputs.items()})


# ------------------------------------------------------------------ stand-in servers


class RestHandler(http.server.BaseHTTPRequestHandler):
  """TF Serving's REST predict API (row format), answered by `server.model`."""
  PATH = re.compile(r'^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$')

  def do_POST(self):  # noqa: N802  (http.server's name)
    match = self.PATH.match(self.path)
    if not match:
      return self.reply(404, {'error': f'Malformed request: POST {self.path}'})
    if match.group(1) != MODEL_NAME:
      return self.reply(404, {'error': f'Servable not found for request: Latest({match.group(1)})'})
    body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
    self.server.requests.append(body)
    signature = body.get('signature_name', features.SERVING_SIGNATURE)
    rows = body['instances']
    inputs = {name: [base64.b64decode(row[name]['b64']) for row in rows] for name in rows[0]}
    try:
      out = run_signature(self.server.model, signature, inputs)
    except tf.errors.InvalidArgumentError as e:
      return self.reply(400, {'error': e.message})
    columns = {k: v.numpy().tolist() for k, v in out.items()}
    predictions = [{k: (v[i].decode() if isinstance(v[i], bytes) else v[i])
                    for k, v in columns.items()} for i in range(len(rows))]
    self.reply(200, {'predictions': predictions})

  def reply(self, status, payload):
    data = json.dumps(payload).encode()
    self.send_response(status)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, *args):
    pass


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """TF Serving's gRPC Predict, answered by `model`."""

  def __init__(self, model):
    self.model = model
    self.requests = []

  def Predict(self, request, context):  # noqa: N802  (the service's name)
    self.requests.append(request)
    if request.model_spec.name != MODEL_NAME:
      context.abort(grpc.StatusCode.NOT_FOUND,
                    f'Servable not found for request: Latest({request.model_spec.name})')
    inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    try:
      out = run_signature(self.model, request.model_spec.signature_name or
                          features.SERVING_SIGNATURE, inputs)
    except tf.errors.InvalidArgumentError as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, value in out.items():
      response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response


@pytest.fixture(scope='module')
def rest_server(loaded):
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), RestHandler)
  server.model, server.requests = loaded, []
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield server
  server.shutdown()
  server.server_close()


@pytest.fixture(scope='module')
def grpc_server(loaded):
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
  servicer = PredictionServicer(loaded)
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
  port = server.add_insecure_port('127.0.0.1:0')
  server.start()
  yield f'127.0.0.1:{port}', servicer
  server.stop(grace=None)


def rest_base(server) -> str:
  return f'http://127.0.0.1:{server.server_address[1]}'


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]  # closed on exit: nothing listens there


# ------------------------------------------------------------------ tests


def test_request_formats_follow_tf_serving():
  assert client.rest_url('localhost:8501', 'cifar10') == \
      'http://localhost:8501/v1/models/cifar10:predict'
  assert client.rest_url('http://h:1/', 'm', version=7) == 'http://h:1/v1/models/m/versions/7:predict'
  assert client.rest_body([b'ab'], 'serving_default') == {
      'signature_name': 'serving_default', 'instances': [{'image_bytes': {'b64': 'YWI='}}]}
  request = client.grpc_request('cifar10', [b'ab', b'cd'], 'serving_default', version=3)
  assert request.model_spec.name == 'cifar10' and request.model_spec.version.value == 3
  assert request.model_spec.signature_name == 'serving_default'
  assert list(tf.make_ndarray(request.inputs['image_bytes'])) == [b'ab', b'cd']


def test_top_k_orders_by_probability():
  assert client.top_k(np.array([0.1, 0.5, 0.2, 0.2]), 3) == [1, 2, 3]
  text = client.format_prediction('x.jpg', np.array([0.1, 0.7, 0.2]), 'b', 2, ['a', 'b', 'c'])
  assert text.splitlines() == ['x.jpg', '  1. b                0.7000  (id 1)',
                               '  2. c                0.2000  (id 2)']
  # Without a name list only the model's top-1 name is known.
  assert 'class 2' in client.format_prediction('x', np.array([0.1, 0.7, 0.2]), 'b', 2)


def test_a_serving_dir_resolves_to_its_highest_complete_version(serving_dir):
  assert client.resolve_model_dir(serving_dir) == os.path.join(serving_dir, '2')
  assert client.resolve_model_dir(os.path.join(serving_dir, '1')) == os.path.join(serving_dir, '1')
  with pytest.raises(client.ClientError, match='neither saved_model.pb'):
    client.resolve_model_dir(os.path.join(serving_dir, '10'))


def test_local_rest_and_grpc_give_the_model_s_own_answer(
    serving_dir, loaded, image_files, rest_server, grpc_server):
  blobs = [open(p, 'rb').read() for p in image_files]
  want = run_signature(loaded, features.SERVING_SIGNATURE, {'image_bytes': blobs})
  want_names = [n.decode() for n in want[features.CLASS_NAMES].numpy()]
  results = {
      'local': client.predict_local(client.resolve_model_dir(serving_dir), blobs),
      'rest': client.predict_rest(rest_base(rest_server), MODEL_NAME, blobs),
      'grpc': client.predict_grpc(grpc_server[0], MODEL_NAME, blobs),
  }
  for name, result in results.items():
    np.testing.assert_allclose(result.probabilities, want[features.PROBABILITIES].numpy(),
                               atol=1e-6, err_msg=name)
    assert result.top_names == want_names, name
  assert all(n.startswith('v2_') for n in want_names)
  # The servers saw the documented request shapes.
  body = rest_server.requests[-1]
  assert body['signature_name'] == 'serving_default'
  assert [base64.b64decode(r['image_bytes']['b64']) for r in body['instances']] == blobs
  assert grpc_server[1].requests[-1].model_spec.name == MODEL_NAME


@pytest.mark.parametrize('target', ['local', 'rest', 'grpc'])
def test_the_command_prints_top_k_with_every_class_name(
    target, serving_dir, image_files, rest_server, grpc_server, capsys):
  argv = {'local': ['--model-dir', serving_dir],
          'rest': ['--rest', rest_base(rest_server), '--class-names', serving_dir],
          'grpc': ['--grpc', grpc_server[0], '--class-names', serving_dir]}[target]
  assert client.main(image_files + argv + ['--top-k', '4']) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == image_files[0] and lines[5] == image_files[1]
  for block in (lines[1:5], lines[6:10]):
    probabilities = [float(l.split()[2]) for l in block]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(l.split()[1] in V2_NAMES for l in block)  # names of the highest version


def test_module_runs_as_a_command_against_rest(image_files, rest_server):
  result = subprocess.run(
      [sys.executable, '-m', 'serving.client', image_files[0], '--rest', rest_base(rest_server),
       '--top-k', '2'], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == image_files[0] and len(lines) == 3
  assert lines[1].split()[1] in V2_NAMES  # the server's top-1 name


def test_the_server_s_refusal_reaches_the_user(rest_server, grpc_server):
  gif = tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy().replace(b'PNG', b'GIF')
  with pytest.raises(client.ClientError, match=r'HTTP 400: .*must hold encoded JPEG or PNG'):
    client.predict_rest(rest_base(rest_server), MODEL_NAME, [gif])
  with pytest.raises(client.ClientError, match=r'INVALID_ARGUMENT.*must hold encoded JPEG or PNG'):
    client.predict_grpc(grpc_server[0], MODEL_NAME, [gif])
  with pytest.raises(client.ClientError, match=r'HTTP 404: Servable not found'):
    client.predict_rest(rest_base(rest_server), 'nope', [gif])
  with pytest.raises(client.ClientError, match=r'NOT_FOUND'):
    client.predict_grpc(grpc_server[0], 'nope', [gif])


def test_the_local_model_s_refusal_is_one_clear_line(serving_dir):
  with pytest.raises(client.ClientError) as error:
    client.predict_local(os.path.join(serving_dir, '1'), [b'GIF89a....'])
  assert 'image_bytes must hold encoded JPEG or PNG images' in str(error.value)
  assert '\n' not in str(error.value)


@pytest.mark.parametrize('flag', ['--rest', '--grpc'])
def test_connection_refused_is_reported_plainly(flag, image_files, capsys):
  target = f'127.0.0.1:{free_port()}'
  assert client.main([image_files[0], flag, target, '--timeout', '10']) == 1
  err = capsys.readouterr().err
  assert err.startswith('error: cannot reach TF Serving') and target in err
  assert re.search(r'(?i)refused|failed to connect', err)


def test_bad_files_are_named(tmp_path, serving_dir, capsys):
  text = tmp_path / 'notes.jpg'
  text.write_text('not an image')
  assert client.main([str(text), '--model-dir', serving_dir]) == 1
  assert capsys.readouterr().err.strip() == \
      f'error: {text} is not a JPEG or PNG file (the model accepts only those)'
  missing = str(tmp_path / 'missing.png')
  assert client.main([missing, '--model-dir', serving_dir]) == 1
  assert capsys.readouterr().err.strip() == f'error: cannot read {missing}: No such file or directory'
  assert client.main([missing, '--model-dir', str(tmp_path / 'nowhere')]) == 1
  assert 'cannot read' in capsys.readouterr().err  # the images are read first


def test_a_target_is_required(capsys):
  with pytest.raises(SystemExit):
    client.main(['x.jpg'])
  assert 'one of the arguments --model-dir --rest --grpc is required' in capsys.readouterr().err


def test_a_copied_version_still_resolves(serving_dir, tmp_path):
  # A serving dir holding one version copied by hand (as docs/serving.md shows).
  shutil.copytree(os.path.join(serving_dir, '1'), tmp_path / '1700000000')
  assert client.resolve_model_dir(str(tmp_path)) == str(tmp_path / '1700000000')
