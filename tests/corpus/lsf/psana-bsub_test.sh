#!/bin/bash
#BSUB -P CSC103SUMMITDEV
#BSUB -W 0:30
#BSUB -nnodes 1
#BSUB -o lsf-%J.out
#BSUB -e lsf-%J.err
#BSUB -N
# Source: StanfordLegion/psana-legion, simtbx/summitdev/bsub_test.sh

echo jsrun -n 1 -g 1 bash test.sh
