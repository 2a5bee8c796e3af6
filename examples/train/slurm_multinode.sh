#!/usr/bin/env bash
# Train a motion adapter on N nodes x 8 GPUs from WebDataset shards (data.shards), with Slurm.
#   sbatch --nodes 4 examples/train/slurm_multinode.sh CONFIG.yaml [key=value ...]
# Every node runs one `accelerate launch`, which starts its 8 processes; node 0 is the rendezvous.
# Resume after a preemption with the same command: --resume latest picks the newest checkpoint, and the
# stream continues at the saved batch (the shards and the process count must stay the same).
#SBATCH --job-name=motionkit-train
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --requeue
set -euo pipefail
config=${1:?usage: sbatch --nodes N slurm_multinode.sh CONFIG.yaml [key=value ...]}
shift
gpus_per_node=${GPUS_PER_NODE:-8}
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
srun --kill-on-bad-exit=1 bash -c "accelerate launch \
    --config_file '$here/accelerate/multinode_ddp.yaml' \
    --num_machines $SLURM_NNODES --num_processes $((SLURM_NNODES * gpus_per_node)) \
    --machine_rank \$SLURM_NODEID --main_process_ip $head --main_process_port 29500 \
    -m motionkit train --config '$config' --resume latest $*"
