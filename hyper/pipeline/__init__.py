"""Work-item pipelines: the Cloudburst framework's tasks.json, run inside a job.

- ``schema.py``   the format: its JSON Schema, `$VAR` expansion, validation with JSON paths
- ``runner.py``   running a document: order, modes, skips, the summary and the exit code
- ``steps.py``    what fetch, tasks (fan-out over input files), move and store do
- ``archives.py`` 7z or zip archives, made and unpacked
- ``codes.py``    the exit codes (the original's where it had them)

`hyper tasks run` is the command; ``python -m hyper.pipeline`` is the same command
for a machine whose PATH does not hold `hyper`.
"""
