#PBS -l nodes=1:ppn=1
#PBS -l walltime=00:10:00
#PBS -N myjob
#PBS -j oe
#PBS -m bea
# Source: abernatskiy/reformulation2018, pbsGridWalker/archive/modularityProcessors/parallelQ.sh

cd $PBS_O_WORKDIR
echo "This is myjob running on " `hostname`
echo parallelQ.py $PBS_ARRAYID
