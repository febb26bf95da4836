#!/bin/bash
#BSUB -q normal  # name of the partition to run job on
#BSUB -cwd /FIXME/FIXME/hpc_workshop
#BSUB -o logs/parallel_estimate_pi_%I.out
#BSUB -e logs/parallel_estimate_pi_%I.err
#BSUB -n1        # number of CPUs. Default: 1
#BSUB -W10 # time for the job.
#BSUB -J FIXME
# Source: cambiotraining/hpc-intro-sanger, course_materials/lsf/parallel_estimate_pi.sh

echo "Starting array: $LSB_JOBINDEX"

# run pi_estimator script
echo Rscript scripts/pi_estimator.R

echo "Finished array: $LSB_JOBINDEX"
