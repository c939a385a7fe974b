"""Our ExampleGen: tfds datasets and class-folder trees to checked tf.Examples."""
