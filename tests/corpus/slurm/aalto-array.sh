#SBATCH -n 1
#SBATCH -t 04:00:00
#SBATCH --mem-per-cpu=2500
#SBATCH --array=0-29
# Source: http://scicomp.aalto.fi/triton/tut/array.html ("Different inputs")

# Each array task runs the same program, but with a different input file.
echo I am number $SLURM_ARRAY_TASK_ID
# e.g. srun ./my_application -input input_data_$SLURM_ARRAY_TASK_ID
cd ..
