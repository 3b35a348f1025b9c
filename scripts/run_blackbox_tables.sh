#!/usr/bin/env bash
# The black-box runs of the paper's Table 1 (MNIST) or Table 2 (DATASET=fashion_mnist): rows
# A/B, A/E, B/B, B/E, C/B, C/E, D/B, D/E; and Table 3 (model F, substitute E,
# Defense-GAN-Rec at L=400, eps 0.10-0.30), cheapest first. Each run resumes from its saved
# substitute rounds, oracle-label batches and evaluation records, so this script can be killed
# and restarted at any time; finished runs are skipped in seconds.
#   [DATASET=fashion_mnist] [ROWS="A/B A/E"] scripts/run_blackbox_tables.sh [stage]
#   stage: none | magnet | defense_gan | adv_tr | rec | table3 | all (default, in that order)
#
# As in the release, the substitute is labelled by the evaluated classifier behind
# Defense-GAN for every defense (--blackbox_labels=defended), so every substitute costs 4,650
# oracle projections. Those use the fast oracle projection (--oracle_fast, the default: L=100,
# R=10, early stop after 25% keeping 2 restarts, recorded in each results.json); the
# evaluation of the adversarial images uses the faithful L=200, R=10 float32. One substitute
# per (classifier, substitute model): none, magnet and defense_gan share the plain
# classifier's (the none stage trains them); adv_tr at each eps and rec have their own.
# Needs: checkpoints/<dataset>/classifier_<m>_adv (0.15), _adv0.3 (scripts/train_baselines.sh),
# _rec (scripts/train_rec_classifiers.sh) and magnet; rows whose checkpoints are missing
# say so and are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
DATASET="${DATASET:-mnist}"
ROWS="${ROWS:-A/B A/E B/B B/E C/B C/E D/B D/E}"
bb() {
  python main.py --flagfile="flags/$DATASET.cfg" --mode=blackbox "$@"
}
want() { [[ "$stage" == "$1" || "$stage" == all ]]; }
have() {  # have <checkpoint folder name> <what the row needs it for>
  if [[ -f "checkpoints/$DATASET/$1/manifest.json" ]]; then return 0; fi
  echo "skip $2: no checkpoints/$DATASET/$1 (see this script's header)"
  return 1
}

if want none; then  # the release's 1,850 images (test[150:2000]); trains the shared substitutes
  for row in $ROWS; do
    have "classifier_${row%/*}" "none $row" || continue
    bb --defense=none --model="${row%/*}" --sub_model="${row#*/}" --num_tests=1850
  done
fi
if want magnet; then
  for row in $ROWS; do
    have magnet "magnet $row" && have "classifier_${row%/*}" "magnet $row" || continue
    bb --defense=magnet --model="${row%/*}" --sub_model="${row#*/}" --num_tests=1850
  done
fi
if want defense_gan; then  # Defense-GAN-Orig: 500 images at L=200, R=10
  for row in $ROWS; do
    have "classifier_${row%/*}" "defense_gan $row" || continue
    bb --defense=defense_gan --model="${row%/*}" --sub_model="${row#*/}" --num_tests=500
  done
fi
if want adv_tr; then
  for eps in 0.3 0.15; do
    suffix=$([[ "$eps" == 0.15 ]] && echo adv || echo "adv$eps")
    for row in $ROWS; do
      m="${row%/*}"
      have "classifier_${m}_${suffix}" "adv_tr $eps $row" || continue
      bb --defense=adv_tr --adv_train_eps="$eps" --model="$m" --sub_model="${row#*/}" \
        --num_tests=1850
    done
  done
fi
if want rec; then  # Defense-GAN-Rec: the Rec classifier labels its own substitute
  for row in $ROWS; do
    m="${row%/*}"
    have "classifier_${m}_rec" "rec $row" || continue
    bb --defense=defense_gan --rec_classifier --model="$m" --sub_model="${row#*/}" \
      --num_tests=500
  done
fi
if want table3; then  # one substitute (F's Rec classifier), five budgets
  if have classifier_F_rec "table3"; then
    for eps in 0.10 0.15 0.20 0.25 0.30; do
      bb --defense=defense_gan --rec_classifier --model=F --sub_model=E --rec_iters=400 \
        --fgsm_eps="$eps" --num_tests=500
    done
  fi
fi
