"""qsub, qstat, qlog and qdel: the shell tools users submit and watch jobs with.

They start fast: no web framework, AWS SDK or prompt library is imported here.
"""
