"""What each script of tests/corpus/ gets from the scheduler it was written for.

Every value comes from that scheduler's documentation, not from what hyper does:

- Slurm, sbatch(1): "By default both standard output and standard error are directed
  to the same file. For job arrays, the default file name is "slurm-%A_%a.out" ... For
  other jobs, the default file name is "slurm-%j.out""; --error: "By default both
  standard output and standard error are directed to the same file"; --time: "Acceptable
  time formats include "minutes", "minutes:seconds", "hours:minutes:seconds",
  "days-hours", "days-hours:minutes" and "days-hours:minutes:seconds""; %J is
  "jobid.stepid" (the batch step has none). The default job name is the script's name.
- PBS, qsub(1B): the job name defaults to the script's base name; without -o/-e the
  files are "job_name.oSEQ" and "job_name.eSEQ" in the submission directory; "-j oe"
  merges stderr into the stdout file. A Torque array task (-t) writes
  job_name.oSEQ-INDEX; a PBS Pro subjob (-J) job_name.oSEQ.INDEX. walltime is
  [[hours:]minutes:]seconds. PBS Pro replaces `^array_index^` in -o and -e paths by
  the subjob's index.
- LSF, bsub: -W is [hour:]minute; "%J is replaced by the job ID", shared by every
  element of an array ("All jobs in the array share the same job ID"); "%I is replaced by
  the index of the job in the array ... Otherwise, %I is replaced by 0"; "If you use -o
  without -e or -eo, the standard error of the job is stored in the output file". Without
  -o LSF mails the output: no file. -R "span[ptile=N]" puts N slots on each host: more
  slots (-n) than N is more than one host.

Paths are templates: {job} is the job's (or task's) own id, {array} the array's id,
{index} the task's index, {name} the job's name. `stderr` None: into the stdout file
(or, for LSF without -o, nowhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


class Expected(NamedTuple):
    path: str  # under tests/corpus/
    name: str
    queue: str | None
    tasks: int | None  # array size; None: a single job
    time_limit: int | None  # seconds
    stdout: str | None
    stderr: str | None
    warns: bool  # whether hyper ignores some of its directives (one warning line)
    # what it asks for, as qsub sends it (CPUs, memory in MiB, GPUs), from its directives
    # in its scheduler's units (sbatch(1): --mem "Default units are megabytes"; qsub(1B):
    # a size without a unit is bytes; bsub: rusage[mem] and -M in MB)
    asks: dict[str, int] | None = None
    refused: bool = False  # more than one node: qsub refuses it with one line


H = 3600
E = Expected
SCRIPTS = [
    # ---- Slurm ----
    E("slurm/arcca-test_array_job.sh", "arraytest", None, 5, None,
      "output-{array}_{index}-{job}.o", None, True, refused=True),
    E("slurm/baard-test_array.sh", "test_array", None, 5, 60,
      "log/test_array_{index}.out", None, False, asks={"mem_mib": 1024}),
    E("slurm/brown-job-array.sh", "arrayjob", None, 2, 600,
      "arrayjob-{index}.out", "arrayjob-{index}.err", False, asks={"cpus": 1}),
    # %a outside an array: sbatch(1) is silent; hyper writes 0, as LSF documents for %I
    E("slurm/breakit-job.sh", "arrayJob", None, None, 60,
      "arrayJob_{job}_0.out", "arrayJob_{job}_0.err", False, asks={"cpus": 1}),
    E("slurm/dantaki-slurm.sh", "FOO", "shared", None, 8 * H,
      "PATH_TO_LOGS/FOO_out", "PATH_TO_LOGS/FOO_err", False, asks={"cpus": 1}),
    E("slurm/jstenner-array_job.sh", "array_job_test", None, 5, 300,
      "array_{array}-{index}.out", None, True, asks={"cpus": 1, "mem_mib": 1024}),
    E("slurm/erangvee-job_array.sh", "task_array", None, 5, 180,
      "./output/task_array_{array}_{index}.out", "./output/task_array_{array}_{index}.err", True,
      asks={"cpus": 1, "mem_mib": 512}),
    E("slurm/ohtar10-hello-world.sh", "hello-world", None, None, 600,
      "slurm-{job}.out", None, True, asks={"cpus": 1, "mem_mib": 100}),
    E("slurm/dhidas-submit.sh", "hello", None, None, 600,
      "hello.{job}.out", "hello.{job}.err", True, asks={"cpus": 5}),
    E("slurm/aws-hpc-recipes-job.sh", "test", None, None, None,
      "test-{job}.out", "test-{job}.err", False),
    E("slurm/adminTools-test_sbatch.sh", "example", "debug", None, 600,
      "example.o{job}", None, False, asks={"cpus": 1, "mem_mib": 10}),
    E("slurm/lancaster-array_test.sh", "array_test", "serial", 4, None,
      "slurm-{array}_{index}.out", None, False),
    E("slurm/uchicago-array.sbatch", "array", "broadwl", 16, H,
      "array_{array}_{index}.out", "array_{array}_{index}.err", False,
      asks={"cpus": 1, "mem_mib": 4096}),
    E("slurm/aalto-array.sh", "aalto-array.sh", None, 30, 4 * H,
      "slurm-{array}_{index}.out", None, False, asks={"cpus": 1, "mem_mib": 2500}),
    # ---- PBS Pro and Torque ----
    E("pbs/ivandona-test1.sh", "ivandona-test1.sh", "short_cpuQ", None, 300,
      "ivandona-test1.sh.o{job}", "ivandona-test1.sh.e{job}", False,
      asks={"cpus": 1, "mem_mib": 2048}),
    E("pbs/wamuumu-test1.sh", "wamuumu-test1.sh", "short_cpuQ", None, 300,
      "wamuumu-test1.sh.o{job}", "wamuumu-test1.sh.e{job}", False,
      asks={"cpus": 1, "mem_mib": 2048}),
    E("pbs/vsc-example.sh", "my_serial_job", None, None, H, "stdout", "stderr", True,
      asks={"cpus": 1}),
    E("pbs/abernatskiy-parallelQ.sh", "myjob", None, None, 600, "myjob.o{job}", None, True,
      asks={"cpus": 1}),
    E("pbs/epcc-example_array_impi.bash", "ArrayJob", None, 56, 4 * H,
      "ArrayJob.o{array}.{index}", "ArrayJob.e{array}.{index}", True, refused=True),
    E("pbs/it4i-jobscript.sh", "it4i-jobscript.sh", "qprod", None, 2 * H,
      "it4i-jobscript.sh.o{job}", "it4i-jobscript.sh.e{job}", True),
    E("pbs/fenglielie-prime_job.sh", "prime_job", "cu2", None, 24000 * H,
      "out_$PBS_JOBID", None, False, asks={"cpus": 4}),
    E("pbs/cosi-array_job_sequence_simple.sh", "array", None, None, 200 * H,
      "array.o{job}", "array.e{job}", True, refused=True),
    E("pbs/pycodethesis-env_5ebb.sh", "env_5ebb", "medium", 190, None,
      "env_5ebb.o{array}-{index}", "env_5ebb.e{array}-{index}", True),
    E("pbs/psuastro-ex1_job_array.pbs", "Ast528Lab6Ex1", None, 10, 300,
      "Ast528Lab6Ex1.o{array}-{index}", None, True, asks={"cpus": 1, "mem_mib": 1024}),
    E("pbs/fluid-client_array.pbs", "femArray0.5", None, 8, 3 * H,
      "output_{index}.txt", "error_{index}.txt", True, asks={"cpus": 1, "mem_mib": 131072}),
    # ---- LSF ----
    E("lsf/helgehatt-lsf.sh", "lsf", "hpcintro", None, 900,
      "lsf_{job}.out", "lsf_{job}.err", True, asks={"cpus": 1, "mem_mib": 512}),
    E("lsf/pandananana-q1_1.sh", "array", "hpc", 10, 300,
      "array_{array}_{index}.out", "array_{array}_{index}.err", False,
      asks={"cpus": 1, "mem_mib": 512}),
    E("lsf/pandananana-q1_2.sh", "array", "hpc", 5, 300,
      "array_{array}_{index}.out", "array_{array}_{index}.err", False,
      asks={"cpus": 1, "mem_mib": 512}),
    E("lsf/sanger-parallel_arrays.sh", "parallel", "normal", 3, 1800,
      "logs/parallel_arrays_{index}.out", "logs/parallel_arrays_{index}.err", True,
      asks={"cpus": 2, "mem_mib": 1000}),
    E("lsf/sanger-estimate_pi.sh", "sanger-estimate_pi.sh", "FIXME", None, None,
      "logs/estimate_pi.out", "logs/estimate_pi.err", True, asks={"cpus": 1}),
    E("lsf/sanger-parallel_estimate_pi.sh", "FIXME", "normal", None, 600,
      "logs/parallel_estimate_pi_0.out", "logs/parallel_estimate_pi_0.err", True, asks={"cpus": 1}),
    E("lsf/calliope-test_submit_runs.sh", "calliope", None, 9, 24 * H, "log_{index}.log",
      None, False, asks={"cpus": 8, "mem_mib": 245760}),
    E("lsf/psana-bsub_test.sh", "psana-bsub_test.sh", None, None, 1800,
      "lsf-{job}.out", "lsf-{job}.err", True),
    E("lsf/uniclust-run_main.sh", "uniclust-run_main.sh", "mpi-long+", None, 330 * H,
      "out.{job}", "err.{job}", True, refused=True),
]  # fmt: skip


def concrete(template: str | None, *, job: int, array: int, index: int | None, name: str) -> str:
    """A template of this table with a job's numbers in it."""
    if template is None:
        return ""
    return template.format(job=job, array=array, index=index, name=name)
