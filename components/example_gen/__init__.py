"""Our ExampleGen: tfds datasets and class-folder trees to checked tf.Examples."""
from components.example_gen.component import ImageExampleGen  # noqa: F401
