#!/usr/bin/env bash
# Train the shipped MNIST classifiers (A-F, then the adversarially trained A and B) with the
# release's settings (flags/mnist.cfg: Adam 1e-3, batch 50, 10 epochs). Each run resumes from
# runs/mnist/classifier_<model>[_adv] if it was interrupted; rerunning is safe.
exec "$(dirname "$0")/train_classifiers.sh" flags/mnist.cfg "A F B D E C" "A B"
