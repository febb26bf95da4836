"""Long options as getopt_long reads them: written in full, or abbreviated to any prefix
that only one option has (`--tasks` is sbatch's `--tasks-per-node`, `--mem` is `--mem`
itself, `--mem-per` is ambiguous). sbatch reads its #SBATCH lines the same way."""

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
