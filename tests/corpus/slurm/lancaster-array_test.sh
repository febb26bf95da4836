# Source: https://lancaster-hec.readthedocs.io/en/latest/jobarrays.html
#SBATCH -p serial
#SBATCH -J array_test
#SBATCH -a 4-10:2

echo source /etc/profile

echo This is job task ${SLURM_ARRAY_TASK_ID}

echo ./my_program input.${SLURM_ARRAY_TASK_ID}.dat
