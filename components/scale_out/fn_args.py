"""FnArgs to and from JSON, so that worker processes get the arguments TFX gave run_fn.

TFX hands `run_fn` and `tuner_fn` an FnArgs in memory. A worker started as a
separate process needs the same arguments: the paths and the module config
travel as JSON, and the data accessor (functions, not data) is rebuilt in the
worker for the tf.Example records that ImageExampleGen writes.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from tfx.v1.components import DataAccessor, FnArgs
from tfx_bsl.tfxio import tf_example_record

# The FnArgs fields that run_fn and tuner_fn read, besides the data accessor.
FIELDS = ('working_dir', 'train_files', 'eval_files', 'transform_graph_path',
          'serving_model_dir', 'model_run_dir', 'base_model', 'hyperparameters',
          'custom_config')


def _tf_example_dataset(file_patterns, options, schema):
  return tf_example_record.TFExampleRecord(
      file_patterns, schema=schema,
      telemetry_descriptors=['scale_out']).TensorFlowDataset(options)


def data_accessor() -> DataAccessor:
  """What TFX builds for an Examples artifact of gzipped tf.Example records."""
  return DataAccessor(tf_dataset_factory=_tf_example_dataset, record_batch_factory=None,
                      data_view_decode_fn=None)


def to_dict(fn_args: FnArgs) -> Dict[str, Any]:
  return {name: getattr(fn_args, name) for name in FIELDS}


def from_dict(values: Dict[str, Any]) -> FnArgs:
  unknown = set(values) - set(FIELDS)
  if unknown:
    raise ValueError(f'unknown FnArgs fields: {sorted(unknown)}')
  return FnArgs(data_accessor=data_accessor(), **values)


def write(fn_args: FnArgs, path: str) -> str:
  with open(path, 'w') as f:
    json.dump(to_dict(fn_args), f, indent=1)
  return path


def read(path: str) -> FnArgs:
  with open(path) as f:
    return from_dict(json.load(f))
