#!/bin/bash
#HYPER -n example-job-name
#HYPER -q sample-queue-1
#HYPER -r 2
#HYPER -d sample-def-1

# An example job: counts for a few seconds. Submit it with
#   qsub qsub-example-file.sh
# and read its output with `qlog ID` (add -f to follow it live).
SECONDS_TO_RUN=${SECONDS_TO_RUN:-10}
echo "hello from job $HYPER_JOB_ID ($HYPER_JOB_NAME) on $(hostname), attempt $HYPER_ATTEMPT"
for i in $(seq 1 "$SECONDS_TO_RUN"); do
    echo "$i seconds"
    sleep 1
done
echo "done"
