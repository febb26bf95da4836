"""Job workflows from INI files (the jobs files of CfnCluster Step Functions).

- ``jobsfile``: the INI format, read and checked before anything runs;
- ``packaging``: a job's files (a local file or folder, or an S3 object or prefix) as
  the archive the host keeps and the worker unpacks;
- ``model``: a workflow as the host keeps it, and its states;
- ``engine``: the host side, advanced by the scheduler's tick: it makes the cluster,
  submits the jobs, watches them, and always tears the cluster down;
- ``client``: starting, watching and cancelling a run from the command line;
- ``tree``: the live picture of a run's states.
"""
