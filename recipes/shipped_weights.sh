#!/usr/bin/env bash
# Reproduce msf/weights/microsegformer.pt on a CPU (about 3 h of wall time on 2 idle cores;
# see msf/weights/MODEL_CARD.md). Seeded; the validation split (seed 42) travels in the checkpoints.
#   bash recipes/shipped_weights.sh [OUT_DIR]        # data: $MSF_DATA or ../shared/data/faces
set -euo pipefail
out="${1:-runs/shipped}"

# Stage 1: progressive 256² -> 384² -> 512² run, the `cpu` preset's schedule ended after 3128
# steps (epoch 54 of 60: 40 at 256², 8 at 384², 6 at 512²).
msf-train --preset cpu --seed 42 --max-steps 3128 --out "$out/stage1"

# Stage 2: fine-tune at 512² scale with a fresh warm-up + cosine: 20 epochs on random 384² crops
# of the 512² images (half the cost of whole images), then 10 epochs on whole 512² images.
msf-train --preset cpu --seed 42 --init "$out/stage1/best.pt" \
  --phases 20x512/384@12,10x512@8 --lr 2.5e-4 --set min_lr=1e-6 --patience 100 --out "$out/stage2"

echo "weights: $out/stage2/best.pt (msf-eval --ckpt $out/stage2/best.pt --split val --size 256,384,512)"
