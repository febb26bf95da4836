#PBS -N array
#PBS -l select=13:ncpus=8:mem=31gb:interconnect=1g,walltime=200:00:00


# Source: hiyoneda/cosi-data-challenges-IPMU, examples/batch_scripts/pbs/array_job_sequence_simple.sh
#The MEGAlib environment first needs to be sourced:
echo source COSIMain_u2.sh
echo seq 1058 1158
