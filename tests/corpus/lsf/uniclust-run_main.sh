#!/bin/bash -ex
# Source: soedinglab/uniclust-pipeline, run_main.sh
#BSUB -q mpi-long+
#BSUB -o out.%J
#BSUB -e err.%J
#BSUB -W 330:00
#BSUB -n 160
#BSUB -a openmpi
#BSUB -m hh
#BSUB -R cbscratch
#BSUB -R "span[ptile=16]"
echo export RUNNER="mpirun --pernode --bind-to none"
