"""Scale-out engines run as process groups on one machine: multi-worker training, a parallel search.

The Trainer's `run_fn` and the Tuner's `tuner_fn` are the code each process
runs; this package only starts the processes with the environment a cluster
manager (Vertex AI Training, Kubeflow) would give them, watches them, and
fails the group plainly when one dies.
"""
