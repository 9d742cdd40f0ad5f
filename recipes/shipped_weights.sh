#!/usr/bin/env bash
# Reproduce msf/weights/microsegformer.pt on a CPU (about 5.5 h on 2 idle cores; see
# msf/weights/MODEL_CARD.md). Seeded; the validation split (seed 42) travels in the checkpoints.
#   bash recipes/shipped_weights.sh [OUT_DIR]        # data: $MSF_DATA or ../shared/data/faces
set -euo pipefail
out="${1:-runs/shipped}"

# Stage 1: progressive 256² -> 384² -> 512² run, the `cpu` preset's schedule ended after 3128
# steps (epoch 54 of 60: 40 at 256², 8 at 384², 6 at 512²).
msf-train --preset cpu --seed 42 --max-steps 3128 --out "$out/stage1"

# Stage 2: fine-tune at 512² scale with a fresh warm-up + cosine: 20 epochs on random 384² crops
# of the 512² images (about 60 % of the cost of whole images), then whole 512² images; ended after
# 2120 steps (epoch 28 of 30; the last two epochs run at a learning rate below 4e-6).
msf-train --preset cpu --seed 42 --init "$out/stage1/best.pt" --max-steps 2120 \
  --phases 20x512/384@12,10x512@8 --lr 2.5e-4 --set min_lr=1e-6 --patience 100 --out "$out/stage2"

# Stage 3: six more epochs on whole 512² images, short warm-up to 4e-5, cosine to 1e-6.
msf-train --preset cpu --seed 42 --init "$out/stage2/best.pt" \
  --phases 6x512@8 --lr 4e-5 --warmup 0.3 --set min_lr=1e-6 --patience 100 --out "$out/stage3"

# Stage 4: six more whole-image 512² epochs, restarted at twice stage 3's rate (8e-5).
msf-train --preset cpu --seed 42 --init "$out/stage3/best.pt" \
  --phases 6x512@8 --lr 8e-5 --warmup 0.3 --set min_lr=1e-6 --patience 100 --out "$out/stage4"

# Stage 5: multi-scale fine-tune, 8 epochs; each batch resized to 512² (half the batches), 256²
# or 384² (a quarter each), drawn with the seed, so one checkpoint also serves 256²/384² inputs.
msf-train --preset cpu --seed 42 --init "$out/stage4/best.pt" \
  --phases 8x512+512+256+384@8 --lr 8e-5 --warmup 0.3 --set min_lr=1e-6 --patience 100 --out "$out/stage5"

# Stage 6: robustness fine-tune (preset robust, ~70 min on 2 shared cores): 14 epochs, each batch at 384² (half),
# 256² or 512²; 80 % of the images degraded (shrunk to a 40-320 px face, blur, noise, low light,
# JPEG or H.264) and shifted/scaled like a face detector's crop; validated at 384². Best: epoch 11.
msf-train --preset robust --seed 42 --init "$out/stage5/best.pt" --out "$out/stage6"

python3 "$(dirname "$0")/package_weights.py" "$out/stage6/best.pt" "$out/stage5/best.pt" "$out/stage4/best.pt" \
  "$out/stage3/best.pt" "$out/stage2/best.pt" "$out/stage1/best.pt" -o "$out/microsegformer.pt" --input-size 384
echo "check: msf-eval --ckpt $out/microsegformer.pt --split val --size 384,256 --degrade"
