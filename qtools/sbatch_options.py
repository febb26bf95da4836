"""sbatch's options: which take a value, which are sbatch's own (how it answers, not the
job's), and their long names; and long options as getopt_long reads them, written in full
or abbreviated to any prefix that only one option has (`--tasks` is sbatch's
`--tasks-per-node`, `--mem` is `--mem` itself, `--mem-per` is ambiguous). sbatch reads
its #SBATCH lines the same way."""

from __future__ import annotations

from hyper.errors import UsageError

# every long option of sbatch (Slurm 22.05, as its getopt lists them when a prefix is
# ambiguous), and those later releases added: an abbreviation is read against all of
# them, not just those hyper takes, so that it means what it means to sbatch
_SBATCH_NAMES = """
    account acctg-freq array batch bb bbf begin chdir cluster cluster-constraint clusters
    comment constraint container context contiguous core-spec cores-per-socket cpu-freq
    cpus-per-gpu cpus-per-task deadline delay-boot dependency distribution error exclude
    exclusive export export-file extra-node-info get-user-env gid gpu-bind gpu-freq gpus
    gpus-per-node gpus-per-socket gpus-per-task gres gres-flags help hint hold ignore-pbs
    input job-name kill-on-invalid-dep licenses mail-type mail-user mcs-label mem mem-bind
    mem-per-cpu mem-per-gpu mincpus network nice no-kill no-requeue nodefile nodelist nodes
    ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node ntasks-per-socket ntasks-per-tres
    open-mode output overcommit oversubscribe parsable partition power prefer priority
    profile propagate qos quiet reboot requeue reservation signal sockets-per-node
    spread-job switches tasks-per-node test-only thread-spec threads-per-core time time-min
    tmp uid usage use-min-nodes verbose version wait wait-all-nodes wckey wrap
    tres-per-task tres-bind oom-kill-step segment spread-segment
"""
SBATCH_OPTIONS = frozenset(f"--{name}" for name in _SBATCH_NAMES.split())


def resolve(name: str, known: frozenset[str] | set[str]) -> str:
    """`name` (`--opt`) as the option it stands for among `known`: itself when known or
    a prefix of none, the one it abbreviates, or a UsageError when it abbreviates several."""
    if name in known:
        return name
    candidates = sorted(option for option in known if option.startswith(name))
    if len(candidates) > 1:
        raise UsageError(f"option '{name}' is ambiguous; possibilities: {' '.join(candidates)}")
    return candidates[0] if candidates else name


# sbatch options that take no value; those after `|` take one only as --opt=value
SBATCH_FLAGS = {
    "--parsable",
    "--requeue",
    "--no-requeue",
    "-H",
    "--hold",
    "-O",
    "--overcommit",
    "-Q",
    "--quiet",
    "-W",
    "--wait",
    "--test-only",
    "--contiguous",
    "--spread-job",
    "--use-min-nodes",
    "-v",
    "--verbose",
    "--ignore-pbs",
    "--exclusive",
    "--get-user-env",
    "--nice",
    "--no-kill",
    "-k",
    "-s",
    "--oversubscribe",
    "--propagate",
    "--reboot",
}
OPTIONAL_VALUE = {"--exclusive", "--get-user-env", "--nice", "--no-kill", "--propagate"}
SHORT_VALUED = set("abABcCdDeFGiJLmMnNopqSstwx")
SBATCH_VALUED = {
    "--job-name",
    "--partition",
    "--array",
    "--dependency",
    "--time",
    "--export",
    "--output",
    "--error",
    "--chdir",
    "--wrap",
    "--account",
    "--nodes",
    "--ntasks",
    "--cpus-per-task",
    "--mem",
    "--mem-per-cpu",
    "--mem-per-gpu",
    "--gres",
    "--gpus",
    "--gpus-per-node",
    "--gpus-per-task",
    "--constraint",
    "--qos",
    "--mail-type",
    "--mail-user",
    "--begin",
    "--comment",
    "--licenses",
    "--nodelist",
    "--exclude",
    "--reservation",
    "--signal",
    "--time-min",
    "--ntasks-per-node",
    "--open-mode",
    "--input",
    "--clusters",
    "--priority",
    "--kill-on-invalid-dep",
    "--tmp",
    "--cpu-bind",
    "--mem-bind",
    "--distribution",
    "--network",
    "--wckey",
    "--export-file",
    "--hint",
    "--threads-per-core",
    "--mincpus",
    "--profile",
    "--deadline",
    "--acctg-freq",
    "--container",
    "--extra-node-info",
}
OWN = {
    "--parsable",
    "-W",
    "--wait",
    "-D",
    "--chdir",
    "--wrap",
    "-Q",
    "--quiet",
    "--test-only",
    "-v",
    "--verbose",
    "--ignore-pbs",
}


# of OWN, those a script's #SBATCH lines may give (sbatch(1): "#SBATCH ... followed by
# any of the CLI options")
SCRIPT_OWN = {"--parsable", "-W", "--wait"}
