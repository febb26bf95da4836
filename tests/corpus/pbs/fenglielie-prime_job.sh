#!/bin/bash
# Source: fenglielie/PBSdemo, prime_job.sh

# name
#PBS -N prime_job

# output
#PBS -o out_$PBS_JOBID
#PBS -j oe

# resource
#PBS -l nodes=1:ppn=4
#PBS -l walltime=24000:00:00

# queue
#PBS -q cu2

# retry
#PBS -r y

# export all environment variables
#PBS -V


# information
echo ------------------------------------------------------
echo [PBS] job id: $PBS_JOBID
echo [PBS] job name: $PBS_JOBNAME
echo [PBS] executing queue: $PBS_QUEUE
echo ------------------------------------------------------
date
