#!/usr/bin/env bash
# Train the baselines of the paper's Tables 1 and 4 (issue 13; DATASET=fashion_mnist: Table 2,
# issue 15): the adversarially trained classifiers A-D at eps 0.3 and 0.15 (the release's
# settings, flags/<dataset>.cfg), and MagNet's auto-encoders. What is already shipped
# (checkpoints/<dataset>/<name>/manifest.json) is skipped; each run resumes from its
# runs/<dataset>/<name> folder if interrupted, and a finished run only re-exports, so rerunning
# is safe. Ship a finished run with
#   cp -r runs/<dataset>/<name>/export checkpoints/<dataset>/<name>
# names: classifier_<m>_adv0.3, classifier_<m>_adv (eps 0.15), magnet.
# One run: about 5 min (D) to 25 min (A) on one core of a Zen 5, about 3 h (A) on a Zen 1.
# MAGNET_EPOCHS: epochs of a MagNet retrained here (the shipped one has its own in its manifest).
#   [DATASET=fashion_mnist] scripts/train_baselines.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET="${DATASET:-mnist}"
MAGNET_EPOCHS="${MAGNET_EPOCHS:-100}"
shipped() {
  if [[ -f "checkpoints/$DATASET/$1/manifest.json" ]]; then echo "skip $1: shipped"; return 0; fi
  return 1
}
for eps in 0.3 0.15; do
  suffix=$([[ "$eps" == 0.15 ]] && echo adv || echo "adv$eps")
  for m in D B C A; do
    shipped "classifier_${m}_${suffix}" && continue
    python main.py --flagfile="flags/$DATASET.cfg" --mode=train_classifier --model="$m" \
      --adv_train --adv_train_eps="$eps" --checkpoint_every=1000 --log_every=250
  done
done
shipped magnet || python main.py --flagfile="flags/$DATASET.cfg" --mode=train_magnet \
  --magnet_epochs="$MAGNET_EPOCHS" --checkpoint_every=975 --log_every=975
