#!/usr/bin/env bash
# Train the shipped MNIST classifiers (A-F, then the adversarially trained A and B) with the
# release's settings (flags/mnist.cfg: Adam 1e-3, batch 50, 10 epochs). Each run resumes from
# runs/mnist/classifier_<model>[_adv] if it was interrupted; rerunning is safe.
set -euo pipefail
cd "$(dirname "$0")/.."
for m in A F B D E C; do
  python main.py --flagfile=flags/mnist.cfg --mode=train_classifier --model="$m" \
    --checkpoint_every=1000 --log_every=250
done
for m in A B; do
  python main.py --flagfile=flags/mnist.cfg --mode=train_classifier --model="$m" --adv_train \
    --checkpoint_every=1000 --log_every=250
done
