"""hyper: a job scheduler and resource orchestrator with a PBS/LSF-style shell interface.

Importing this package is cheap on purpose: no web framework, AWS SDK or prompt
library is loaded until a command needs it.
"""

__version__ = "0.1.0"
