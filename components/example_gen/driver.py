"""ImageExampleGen's driver: which span to read, and the input fingerprint, at run time.

TFX's ExampleGens resolve `{SPAN}` in their driver, before the cache check:
the newest span whose folder matches is the one this run ingests, and its
number goes into the execution's properties and onto the Examples artifact
(custom property `span`). This driver keeps that contract for image trees
(TFX's own span resolution, components/example_gen/sources.latest_span) and
adds what the executor needs:

- `image_root`: the tree this run reads (the newest span's folder, or the
  plain tree);
- `input_fingerprint`: paths, sizes and modification times of that tree plus
  the code digest, so MLMD's cache re-runs ExampleGen when the data (or the
  code) changes, and only then. A new span changes it; older spans do not.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import utils as example_gen_utils

from components.example_gen import sources
from tfx_pipeline import config as config_lib

DATA_CONFIG_KEY = 'data_config'
CODE_DIGEST_KEY = 'code_digest'
IMAGE_ROOT_KEY = 'image_root'
SPAN_KEY = example_gen_utils.SPAN_PROPERTY_NAME  # 'span'
VERSION_KEY = example_gen_utils.VERSION_PROPERTY_NAME  # 'version'
FINGERPRINT_KEY = example_gen_utils.FINGERPRINT_PROPERTY_NAME  # 'input_fingerprint'


def resolve(data: config_lib.DataConfig, code_digest: str) -> Dict[str, Any]:
  """The run-time properties for `data`: span, version, image root, fingerprint."""
  if not data.image_dir:
    return {SPAN_KEY: 0, VERSION_KEY: 0, IMAGE_ROOT_KEY: '',
            FINGERPRINT_KEY: f'tfds:{data.tfds_name}:{data.tfds_data_dir or "default"}:'
                             f'{code_digest}'}
  span, root = sources.latest_span(data.image_dir)
  return {SPAN_KEY: span, VERSION_KEY: 0, IMAGE_ROOT_KEY: root,
          FINGERPRINT_KEY: f'{sources.fingerprint_tree(root)}:{code_digest}'}


class Driver(example_gen_driver.Driver):
  """Resolves the span and fingerprint; TFX's base driver puts them on the artifact."""

  def resolve_exec_properties(self, exec_properties: Dict[str, Any], pipeline_info,
                              component_info) -> Dict[str, Any]:
    del pipeline_info, component_info
    data = config_lib.DataConfig(**json.loads(exec_properties[DATA_CONFIG_KEY]))
    exec_properties.update(resolve(data, exec_properties.get(CODE_DIGEST_KEY, '')))
    return exec_properties
