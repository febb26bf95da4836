"""hyper's Python API: run functions on hyper's workers.

``Executor`` runs each call as a job (a ``map`` as one array job), its function and
arguments carried in with a package and its result carried out through the host's
file store. ``WorkerPool`` starts worker jobs that connect back to the program over
TCP and run its calls there. ``hyper.Executor`` and ``hyper.WorkerPool`` name them.
"""
