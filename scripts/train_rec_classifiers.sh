#!/usr/bin/env bash
# Defense-GAN-Rec for MNIST (issue 13; DATASET=fashion_mnist for Table 2, issue 15): classifiers
# A-D and F trained on reconstructions of the 50,000 training images by the shipped generator.
# The first run builds the reconstruction cache
# (runs/<dataset>/recs/L100_R10_bf16_prune0.25k2_s0, chunks of 1,000 images, resumable: a
# killed build continues at the next missing chunk); the others read it. The projection is
# the fast one (L=100, R=10, bfloat16, early stop after 25% of L keeping 2 restarts), written
# in each manifest: 94 min for the 50,000 images on a 2-core AVX-512/BF16 Zen 5 (bf16
# is emulated, and far slower, on AVX2-only CPUs: build the cache on a BF16 machine).
# Ship with:
#   cp -r runs/<dataset>/classifier_<m>_rec/export checkpoints/<dataset>/classifier_<m>_rec
#   [DATASET=fashion_mnist] scripts/train_rec_classifiers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET="${DATASET:-mnist}"
for m in A F B C D; do
  python main.py --flagfile="flags/$DATASET.cfg" --mode=train_classifier --model="$m" \
    --train_on_recs --checkpoint_every=1000 --log_every=250
done
