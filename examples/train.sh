#!/bin/bash
# A toy training job for Shepherd's demo: it trains for 12 steps, saves a
# checkpoint after each, reports progress, and resumes from the checkpoint when
# it is restarted. Its first attempt crashes half-way, as real jobs do at 3 a.m.
#
#SBATCH --partition=a100
#SBATCH --time=10
#SHEPHERD --gpus 1 --max-retries 3
#SHEPHERD --heartbeat-interval 2s --heartbeat-grace 60s --backoff-base 3s

ckpt=train.ckpt
step=0
[ -f "$ckpt" ] && step=$(cat "$ckpt")
echo "attempt $SHEPHERD_ATTEMPT on $(hostname), GPUs $CUDA_VISIBLE_DEVICES, resuming at step $step"

while [ "$step" -lt 12 ]; do
    step=$((step + 1))
    sleep 0.5
    echo "$step" > "$ckpt"
    shepherd progress --step "$step" "loss=$(( 100 / step ))" 2>/dev/null || true
    if [ "$SHEPHERD_ATTEMPT" = 1 ] && [ "$step" = 6 ]; then
        echo "RuntimeError: CUDA error: an illegal memory access was encountered" >&2
        exit 1
    fi
done
echo "training done after $step steps"
rm -f "$ckpt"
