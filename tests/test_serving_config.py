"""serving/models.config and serving/batching_parameters.txt parse as TF Serving reads them."""

import os
import re

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING = os.path.join(REPO, 'serving')


def read(name: str) -> str:
  with open(os.path.join(SERVING, name)) as f:
    return f.read()


def batching_parameters_class():
  """BatchingParameters fields 1-7 as in TF Serving's session_bundle_config.proto.

  The proto is not part of tensorflow-serving-api's Python package; this copy
  of its field names and types is enough to reject a misspelled field.
  """
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  from google.protobuf import wrappers_pb2
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  proto = descriptor_pb2.FileDescriptorProto(
      name='batching_test.proto', package='tensorflow.serving', syntax='proto3',
      dependency=['google/protobuf/wrappers.proto'])
  message = proto.message_type.add(name='BatchingParameters')
  field = descriptor_pb2.FieldDescriptorProto
  for number, name in enumerate(['max_batch_size', 'batch_timeout_micros',
                                 'max_enqueued_batches', 'num_batch_threads'], start=1):
    message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                      type_name='.google.protobuf.Int64Value', label=field.LABEL_OPTIONAL)
  message.field.add(name='thread_pool_name', number=5, type=field.TYPE_MESSAGE,
                    type_name='.google.protobuf.StringValue', label=field.LABEL_OPTIONAL)
  message.field.add(name='allowed_batch_sizes', number=6, type=field.TYPE_INT64,
                    label=field.LABEL_REPEATED)
  message.field.add(name='pad_variable_length_inputs', number=7, type=field.TYPE_BOOL,
                    label=field.LABEL_OPTIONAL)
  pool.Add(proto)
  descriptor = pool.FindMessageTypeByName('tensorflow.serving.BatchingParameters')
  return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # protobuf 3.20


def test_models_config_names_the_model_where_the_docs_mount_it():
  config = text_format.Parse(read('models.config'), model_server_config_pb2.ModelServerConfig())
  (model,) = config.model_config_list.config
  assert model.name == 'cifar10'
  assert model.base_path == '/models/cifar10'
  assert model.model_platform == 'tensorflow'
  assert model.model_version_policy.WhichOneof('policy_choice') == 'latest'
  assert model.model_version_policy.latest.num_versions >= 1
  with open(os.path.join(REPO, 'docs', 'serving.md')) as f:
    docs = f.read()
  mounts = re.findall(r'-v\s+"?[^\s:"]+:(/models/[^\s"]+)"?', docs)
  assert mounts and set(mounts) == {model.base_path}


def test_batching_parameters_are_valid_and_sized_for_the_measured_batches():
  params = text_format.Parse(read('batching_parameters.txt'), batching_parameters_class()())
  assert params.max_batch_size.value == 32
  assert 0 < params.batch_timeout_micros.value <= 10_000  # milliseconds, not seconds
  assert params.num_batch_threads.value >= 1
  assert params.max_enqueued_batches.value >= 1
  if params.allowed_batch_sizes:
    assert list(params.allowed_batch_sizes) == sorted(params.allowed_batch_sizes)
    assert params.allowed_batch_sizes[-1] == params.max_batch_size.value


def test_a_misspelled_batching_field_would_be_caught():
  import pytest
  with pytest.raises(text_format.ParseError):
    text_format.Parse('max_batch_sise { value: 32 }', batching_parameters_class()())
