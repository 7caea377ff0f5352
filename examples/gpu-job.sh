#!/bin/bash
# A small GPU job: reports where it ran and which GPUs Slurm gave it.
#SBATCH --job-name=shepherd-example
#SBATCH --gres=gpu:1
#SBATCH --time=5

echo "node:  $(hostname)"
echo "job:   ${SLURM_JOB_ID:-?} in partition ${SLURM_JOB_PARTITION:-?}"
echo "gpus:  ${CUDA_VISIBLE_DEVICES:-none}"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L
fi
