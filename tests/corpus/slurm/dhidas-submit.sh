#!/bin/bash
# Source: dhidas/NSLS2ClusterTutorial, fortran/submit.sh

#SBATCH --job-name=hello
#SBATCH --error=%x.%J.err 
#SBATCH --output=%x.%J.out
#SBATCH --ntasks=5
#SBATCH --time=10:00
#SBATCH --qos=normal

echo srun ./hello
