"""Installs the project's packages; dependencies are pinned in requirements.lock.

The Makefile installs requirements.lock first (every package pinned, transitive
ones too), then this package with --no-deps. install_requires repeats the
direct dependencies at the same pins for tools that read setup.py alone.
"""

from setuptools import find_packages, setup

setup(
    name='cifar10-alexnet-tfx',
    version='0.1.0',
    description='A TFX pipeline that trains a tuned AlexNet on CIFAR-10 and pushes a '
                'SavedModel for TensorFlow Serving.',
    python_requires='==3.10.*',
    packages=find_packages(include=['components', 'components.*', 'models', 'tfx_pipeline',
                                    'tuning', 'serving']),
    package_data={'tfx_pipeline': ['templates/*.j2']},  # the model card's templates
    py_modules=['pipeline_runner'],
    install_requires=[
        'tfx==1.16.0',
        'tensorflow==2.16.2',
        'apache-beam[gcp]==2.59.0',
        'keras-tuner==1.4.7',
        'tensorflow-datasets==4.9.6',
        'keras==3.12.4',
        'tensorflow-serving-api==2.16.1',
        'tqdm==4.70.1',  # serving.client's progress bar (--output)
    ],
    entry_points={'console_scripts': ['cifar10-alexnet-pipeline=pipeline_runner:main']},
)
