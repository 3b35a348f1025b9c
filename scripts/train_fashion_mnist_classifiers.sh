#!/usr/bin/env bash
# Train the Fashion-MNIST classifiers (A-F, cheapest first) with the release's settings
# (flags/fashion_mnist.cfg: Adam 1e-3, batch 50, 10 epochs). Each run resumes from
# runs/fashion_mnist/classifier_<model> if it was interrupted; rerunning is safe. Ship one with
# `cp -r runs/fashion_mnist/classifier_<m>/export checkpoints/fashion_mnist/classifier_<m>`.
set -euo pipefail
cd "$(dirname "$0")/.."
for m in ${MODELS:-E D B F A C}; do
  python main.py --flagfile=flags/fashion_mnist.cfg --mode=train_classifier --model="$m" \
    --checkpoint_every=1000 --log_every=250
done
