#!/bin/bash
# Starts one hyper worker agent. The launcher sets:
#   HYPER_URL          the host's API URL
#   HYPER_API_KEY      the host's API key (from the environment, never the command line)
#   HYPER_QUEUE        the queue to take jobs from
#   HYPER_DEFINITION   the job definition the jobs run with
# and optionally HYPER_WORKER_ID, HYPER_IDLE_SECONDS and HYPER_LIFETIME_SECONDS.
set -euo pipefail

# ---- user section -------------------------------------------------------------
# Prepare the machine before the worker takes jobs: mount shared storage, fetch
# reference data, activate an environment. For example:
#   mount -t nfs4 fs.example.internal:/ /shared
#   source /opt/conda/bin/activate analysis
# ---- end of user section ---------------------------------------------------------

: "${HYPER_URL:?set HYPER_URL}" "${HYPER_API_KEY:?set HYPER_API_KEY}"
: "${HYPER_QUEUE:?set HYPER_QUEUE}" "${HYPER_DEFINITION:?set HYPER_DEFINITION}"
worker_id=${HYPER_WORKER_ID:-"w-$(hostname)-$$"}
args=(--url "$HYPER_URL" --worker-id "$worker_id" --queue "$HYPER_QUEUE"
      --definition "$HYPER_DEFINITION" --workdir /work
      --idle-seconds "${HYPER_IDLE_SECONDS:-60}")
if [ -n "${HYPER_LIFETIME_SECONDS:-}" ]; then
  args+=(--lifetime-seconds "$HYPER_LIFETIME_SECONDS")
fi
exec python -m hyper.worker "${args[@]}"
