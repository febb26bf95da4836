#!/bin/bash
# Starts one hyper worker agent. The launcher sets:
#   HYPER_URL          the host's API URL
#   HYPER_API_KEY      the host's API key, or the ARN of the secret holding it (never on
#                      the command line)
#   HYPER_QUEUE        the queue to take jobs from
#   HYPER_DEFINITION   the job definition the jobs run with
# and optionally HYPER_WORKER_ID (on AWS Batch: HYPER_WORKER_ID_PREFIX, to which the
# worker adds the array index), HYPER_REGION, HYPER_IDLE_SECONDS, HYPER_HEARTBEAT_SECONDS,
# HYPER_LIFETIME_SECONDS and HYPER_WORKDIR (default /work).
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
      --definition "$HYPER_DEFINITION" --workdir "${HYPER_WORKDIR:-/work}"
      --idle-seconds "${HYPER_IDLE_SECONDS:-60}" --region "${HYPER_REGION:-}"
      --heartbeat-seconds "${HYPER_HEARTBEAT_SECONDS:-0.5}")
if [ -n "${HYPER_LIFETIME_SECONDS:-}" ]; then
  args+=(--lifetime-seconds "$HYPER_LIFETIME_SECONDS")
fi
exec python -m hyper.worker "${args[@]}"
