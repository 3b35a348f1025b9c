#!/usr/bin/env bash
# The black-box runs of the paper's Table 1 (MNIST) or Table 2 (DATASET=fashion_mnist): rows
# A/B, A/E, B/B, B/E, C/B, C/E, D/B, D/E; and Table 3 (model F, substitute E,
# Defense-GAN-Rec at L=400, eps 0.10-0.30). Row by row: each row's runs one after another, so
# the substitute its none, magnet and defense_gan runs share (kept in the git-ignored
# results/<dataset>/blackbox/.substitutes) is trained once, in the same session. Each run
# resumes from its saved substitute rounds, oracle-label batches and evaluation records (on the
# same machine), so this script can be killed and restarted at any time; finished runs are
# skipped in seconds.
#   [DATASET=fashion_mnist] [ROWS="A/B A/E"] scripts/run_blackbox_tables.sh [stage]
#   stage: none | magnet | defense_gan | adv_tr | rec | table3 (that column for every row in
#          ROWS) | all (default: every column of a row, row after row, then table3)
#
# As in the release, the substitute is labelled by the evaluated classifier behind
# Defense-GAN for every defense (--blackbox_labels=defended), so every substitute costs 4,650
# oracle projections. Those use the fast oracle projection (--oracle_fast, the default: L=100,
# R=10, early stop after 25% keeping 2 restarts; and bf16, --oracle_precision=bfloat16;
# recorded in each results.json and the run's name); the evaluation of the adversarial images
# uses the faithful L=200, R=10 float32. One substitute
# per (classifier, substitute model): none, magnet and defense_gan share the plain
# classifier's (the none run trains it); adv_tr at each eps and rec have their own.
# Cost on one Zen 5 core: a substitute about 14 min (bf16 oracle; 24-27 min with fp32); a Defense-GAN evaluation of 500 images
# about 14 min, plus 14 min for the clean images, which every row shares (one cache under
# results/<dataset>/blackbox/.projection_cache); the rest is seconds. Measured: row A/B 1.5 h
# (with the shared clean projection), row A/E 1.2 h.
# Needs: checkpoints/<dataset>/classifier_<m>_adv (0.15), _adv0.3 (scripts/train_baselines.sh),
# _rec (scripts/train_rec_classifiers.sh) and magnet; rows whose checkpoints are missing
# say so and are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
DATASET="${DATASET:-mnist}"
ROWS="${ROWS:-A/B A/E B/B B/E C/B C/E D/B D/E}"
bb() {  # the oracle projection must match scripts/results_blackbox.py's TABLE_ORACLE
  python main.py --flagfile="flags/$DATASET.cfg" --mode=blackbox --oracle_precision=bfloat16 "$@"
}
want() { [[ "$stage" == "$1" || "$stage" == all ]]; }
have() {  # have <checkpoint folder name> <what the row needs it for>
  if [[ -f "checkpoints/$DATASET/$1/manifest.json" ]]; then return 0; fi
  echo "skip $2: no checkpoints/$DATASET/$1 (see this script's header)"
  return 1
}

column() {  # column <stage> <row>: the run of one Table 1 cell (two for adv_tr)
  local m="${2%/*}" sub="${2#*/}"
  case "$1" in
    none)  # the release's 1,850 images (test[150:2000]); trains the shared substitute
      have "classifier_$m" "none $2" || return 0
      bb --defense=none --model="$m" --sub_model="$sub" --num_tests=1850 ;;
    magnet)
      have magnet "magnet $2" && have "classifier_$m" "magnet $2" || return 0
      bb --defense=magnet --model="$m" --sub_model="$sub" --num_tests=1850 ;;
    defense_gan)  # Defense-GAN-Orig: 500 images at L=200, R=10
      have "classifier_$m" "defense_gan $2" || return 0
      bb --defense=defense_gan --model="$m" --sub_model="$sub" --num_tests=500 ;;
    adv_tr)
      local eps suffix
      for eps in 0.3 0.15; do
        suffix=$([[ "$eps" == 0.15 ]] && echo adv || echo "adv$eps")
        have "classifier_${m}_${suffix}" "adv_tr $eps $2" || continue
        bb --defense=adv_tr --adv_train_eps="$eps" --model="$m" --sub_model="$sub" \
          --num_tests=1850
      done ;;
    rec)  # Defense-GAN-Rec: the Rec classifier labels its own substitute
      have "classifier_${m}_rec" "rec $2" || return 0
      bb --defense=defense_gan --rec_classifier --model="$m" --sub_model="$sub" \
        --num_tests=500 ;;
  esac
}

case "$stage" in
  none|magnet|defense_gan|adv_tr|rec)
    for row in $ROWS; do column "$stage" "$row"; done ;;
  all)
    for row in $ROWS; do
      for col in none magnet defense_gan adv_tr rec; do column "$col" "$row"; done
    done ;;
  table3) ;;
  *) echo "error: stage '$stage': one of none magnet defense_gan adv_tr rec table3 all" >&2
     exit 2 ;;
esac
if want table3; then  # one substitute (F's Rec classifier), five budgets
  if have classifier_F_rec "table3"; then
    for eps in 0.10 0.15 0.20 0.25 0.30; do
      bb --defense=defense_gan --rec_classifier --model=F --sub_model=E --rec_iters=400 \
        --fgsm_eps="$eps" --num_tests=500
    done
  fi
fi
