#PBS -A OPEN-00-00
#PBS -q qprod
#PBS -l select=1,walltime=02:00:00
# Source: https://docs.it4i.cz/general/job-arrays/ ("Shared Jobscript")

# change to scratch directory
echo mkdir -p $SCRDIR

# get individual tasks from tasklist with index from PBS JOB ARRAY
TASK=$(echo "task-${PBS_ARRAY_INDEX}")

# execute the calculation
echo ./myprog.x input output $TASK
