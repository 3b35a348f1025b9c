#!/usr/bin/env bash
# Train the Fashion-MNIST classifiers A-F with the release's settings (flags/fashion_mnist.cfg:
# Adam 1e-3, batch 50, 10 epochs). The adversarially trained A-D (eps 0.3 and 0.15) and MagNet
# that Table 2 needs: DATASET=fashion_mnist scripts/train_baselines.sh.
# Each run resumes from runs/fashion_mnist/classifier_<model>[_adv] if it was interrupted;
# rerunning is safe. Ship a model with
#   cp -r runs/fashion_mnist/classifier_A/export checkpoints/fashion_mnist/classifier_A
exec "$(dirname "$0")/train_classifiers.sh" flags/fashion_mnist.cfg "A F B D E C" ""
