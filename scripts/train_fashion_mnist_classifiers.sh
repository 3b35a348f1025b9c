#!/usr/bin/env bash
# Train the Fashion-MNIST classifiers (A-F, then the adversarially trained A-D that the
# white-box table's Adv. tr. column and Table 2 need) with the release's settings
# (flags/fashion_mnist.cfg: Adam 1e-3, batch 50, 10 epochs, FGSM eps 0.15 for --adv_train).
# Each run resumes from runs/fashion_mnist/classifier_<model>[_adv] if it was interrupted;
# rerunning is safe. Ship a model with
#   cp -r runs/fashion_mnist/classifier_A/export checkpoints/fashion_mnist/classifier_A
exec "$(dirname "$0")/train_classifiers.sh" flags/fashion_mnist.cfg "A F B D E C" "A B C D"
