"""Compiles the pipeline for Vertex AI Pipelines / Kubeflow Pipelines v2 (nothing runs).

    python pipeline_runner.py --runner kubeflow-v2 --output pipeline.json \\
        --image gcr.io/PROJECT/cifar10-alexnet:latest \\
        --pipeline-root gs://BUCKET/pipeline --serving-dir gs://BUCKET/serving

The graph is `create_pipeline(config)`, the one the LocalDagRunner runs;
KubeflowV2DagRunner turns it into a PipelineJob JSON whose every step runs in
`image`. That image must contain this package (module code is referenced by
dotted path: components.transform.preprocessing_fn, ...); docs/scale_out.md
has a Dockerfile and the submit call.

Compiling reads no data: the image folder or tfds data is read inside the
containers when the job runs, so paths in the config are container paths.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional

from tfx_pipeline.config import PipelineConfig

IMAGE_NAME = 'cifar10-alexnet'


def default_image(environ: Mapping[str, str] = os.environ) -> str:
  """gcr.io/<$GOOGLE_CLOUD_PROJECT, else PROJECT>/cifar10-alexnet:latest."""
  project = environ.get('GOOGLE_CLOUD_PROJECT') or 'PROJECT'
  return f'gcr.io/{project}/{IMAGE_NAME}:latest'


def is_url(path: Optional[str]) -> bool:
  """gs://, s3://, ...: a path every container sees, unlike a local one."""
  return bool(path) and '://' in path


def container_warnings(config: PipelineConfig, image: str) -> List[str]:
  """What in `config` will not work, or will be lost, once the steps run in containers."""
  notes = []
  if not is_url(config.pipeline_root):
    notes.append(f'pipeline root {config.pipeline_root} is local: pass a gs:// one with '
                 '--pipeline-root, or PipelineJob(pipeline_root="gs://...") when submitting')
  if not is_url(config.serving_dir):
    notes.append(f'serving dir {config.serving_dir} is a path inside the Pusher\'s container '
                 'and is lost when the step ends: use --serving-dir gs://BUCKET/serving')
  if config.data.image_dir:
    notes.append(f'--image-dir {config.data.image_dir} is read inside the ImageExampleGen '
                 'container: it must exist there (baked into the image or mounted)')
  if '/PROJECT/' in image:
    notes.append(f'image {image} is a placeholder: pass --image or set GOOGLE_CLOUD_PROJECT')
  return notes


def _runner_module():
  """tfx.v1.orchestration.experimental, once its Kubeflow v2 runner imports."""
  try:
    from tfx.v1.orchestration import experimental  # pylint: disable=g-import-not-at-top
    experimental.KubeflowV2DagRunner  # pylint: disable=pointless-statement
  except (ImportError, AttributeError) as e:
    raise ImportError(
        f'compiling for Kubeflow v2 needs kfp-pipeline-spec ({e}); it is pinned in '
        'requirements.lock: run `make install`') from None
  return experimental


def compile_pipeline(pipeline, image: str, output_path: str) -> Dict[str, Any]:
  """Writes the PipelineJob JSON for `pipeline` to `output_path`; returns it as a dict."""
  experimental = _runner_module()
  output_path = os.path.abspath(output_path)
  runner = experimental.KubeflowV2DagRunner(
      config=experimental.KubeflowV2DagRunnerConfig(
          display_name=pipeline.pipeline_info.pipeline_name, default_image=image),
      output_dir=os.path.dirname(output_path),
      output_filename=os.path.basename(output_path))
  return runner.run(pipeline, write_out=True)


def task_names(job: Mapping[str, Any]) -> List[str]:
  """The DAG's task names (the Resolver compiles to two: -model-resolver, -model-blessing-)."""
  return sorted(job['pipelineSpec']['root']['dag']['tasks'])
