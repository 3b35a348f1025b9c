#!/usr/bin/env bash
# Train the MNIST baselines of the paper's Tables 1 and 4 (issue 13): MagNet's auto-encoders,
# then the adversarially trained classifiers A-D at eps 0.15 and 0.3 (the release's settings,
# flags/mnist.cfg). Cheapest first; each run resumes from its runs/mnist/<name> folder if
# interrupted, and a finished run only re-exports, so rerunning is safe.
#   runs/mnist/magnet               -> ship with: cp -r runs/mnist/magnet/export checkpoints/mnist/magnet
#   runs/mnist/classifier_<m>_adv   (eps 0.15; A and B are shipped already)
#   runs/mnist/classifier_<m>_adv0.3
# MAGNET_EPOCHS: MagNet trained 100 epochs; the shipped one has the epochs in its manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
MAGNET_EPOCHS="${MAGNET_EPOCHS:-100}"
python main.py --flagfile=flags/mnist.cfg --mode=train_magnet --magnet_epochs="$MAGNET_EPOCHS" \
  --checkpoint_every=975 --log_every=975
for eps in 0.15 0.3; do
  for m in A B C D; do
    python main.py --flagfile=flags/mnist.cfg --mode=train_classifier --model="$m" --adv_train \
      --adv_train_eps="$eps" --checkpoint_every=1000 --log_every=250
  done
done
