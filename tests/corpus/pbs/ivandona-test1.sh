#!/bin/bash
#PBS -l select=1:ncpus=1:mem=2gb
# set max execution time
#PBS -l walltime=0:05:00
# set the queue
#PBS -q short_cpuQ
# Source: ivandona/hpc-exercises, test1.sh
echo ls –lrt
echo "hostname: " && hostname
