#!/usr/bin/env bash
# Train classifiers with a data set's flagfile: the plain models, then the adversarially
# trained ones (--adv_train). Each run resumes from runs/<dataset>/classifier_<model>[_adv]
# if it was interrupted; rerunning is safe.
#   scripts/train_classifiers.sh flags/<dataset>.cfg "<plain models>" "<adv-trained models>"
set -euo pipefail
cd "$(dirname "$0")/.."
flagfile=$1
for m in $2; do
  python main.py --flagfile="$flagfile" --mode=train_classifier --model="$m" \
    --checkpoint_every=1000 --log_every=250
done
for m in $3; do
  python main.py --flagfile="$flagfile" --mode=train_classifier --model="$m" --adv_train \
    --checkpoint_every=1000 --log_every=250
done
