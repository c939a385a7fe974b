"""Shared fixtures: generated image trees and a real TFT transform graph built on them."""

import functools
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # noqa: E402

import fixtures  # noqa: E402

IMAGE_SIZE = 32


@pytest.fixture(scope='session')
def image_tree(tmp_path_factory):
  """ROOT/train/<10 classes>/ with 12 images each (JPEG and PNG)."""
  return fixtures.make_image_tree(str(tmp_path_factory.mktemp('tree')), per_class=12)


def build_transform_graph(output_dir: str, encoded_images, labels, image_size=IMAGE_SIZE):
  """Runs the project's preprocessing_fn through TFT on `encoded_images` -> output_dir."""
  import tensorflow as tf
  import tensorflow_transform.beam as tft_beam
  import tensorflow_transform as tft
  from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

  from components import features, transform

  spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
          features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
  rows = [{features.IMAGE_KEY: [b], features.LABEL_KEY: [l]}
          for b, l in zip(encoded_images, labels)]
  fn = functools.partial(transform.preprocessing_fn, custom_config={'image_size': image_size})
  with tft_beam.Context(temp_dir=os.path.join(output_dir, 'tmp'), force_tf_compat_v1=False):
    transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(fn)
    _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
  # Like TFX's Transform: the raw schema travels with the graph.
  metadata_io.write_metadata(metadata, os.path.join(output_dir,
                                                    tft.TFTransformOutput.RAW_METADATA_DIR))
  return output_dir


@pytest.fixture(scope='session')
def transform_output(tmp_path_factory, image_tree):
  """A TFTransformOutput analyzed on the generated tree's images."""
  import glob
  import tensorflow_transform as tft
  paths = sorted(glob.glob(os.path.join(image_tree, 'train', '*', '*')))
  names = sorted(os.listdir(os.path.join(image_tree, 'train')))
  images = [open(p, 'rb').read() for p in paths]
  labels = [names.index(os.path.basename(os.path.dirname(p))) for p in paths]
  out = build_transform_graph(str(tmp_path_factory.mktemp('transform')), images, labels)
  return tft.TFTransformOutput(out)
