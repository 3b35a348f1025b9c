#!/usr/bin/env bash
# Detection (Figs 4-5) and the L / R sweeps (Tables 8 and 10 for MNIST; DATASET=fashion_mnist:
# Tables 9 and 11, which has no R=20 row), model F, black-box FGSM crafted on substitute E,
# behind the Detection sections of RESULTS.md. Each (L, R) is ONE
# detect run: it projects --num_tests validation images (the threshold), the clean test images
# and the attacked images once, and its results.json holds the accuracies of classifier F on
# the reconstructions (no attack, attacked) and the detection AUC. Projections are cached per
# batch under results/<dataset>/sweeps/.projection_cache, so it resumes where it was killed,
# and the Defense-GAN-Rec runs (second classifier, same projections) project nothing again.
#
#   [DATASET=fashion_mnist] scripts/run_sweeps.sh [stage]
#     stage: blackbox | L | R | eps | all (default, that order)
#     blackbox  the black-box runs the sweeps attack with: model F, substitute E (labelled
#               through Defense-GAN as in the release, shared by the five runs), FGSM eps 0.3
#               and, for the ROC figure, 0.1 0.15 0.2 0.25; N test images each (adversarial.npz)
#     L, R      Tables 8 and 10 on the eps 0.3 run; eps: the ROC figure (L=200, R=10)
#   Overrides: BB=<black-box run dir at eps 0.3>, REC=<Rec classifier F dir, or - for Orig only>
#   (default checkpoints/<dataset>/classifier_F_rec), EPS_DIRS=<comma-separated run dirs>,
#   N (500).
#
# Cost (fp32; 4.2e-4 s per image per L*R step-restart on 2 idle Zen 5 cores, Table 13's L=200,
# R=10 cell; 8e-4 on one core): each cell projects N validation, N + 150 clean test (the first
# N and those the attack used, test[150:150+N]) and N attacked images, so N=500 on 2 cores:
# L=25 3 min, 50 6 min, 100 12 min, 200 23 min, 400 46 min, 800 1.5 h, 1600 3.1 h; R=20 (L=100)
# 23 min; eps (L=200, 4 more attacked sets) 0.5 h after the L=200 cell, whose cache it reads.
# A cell is one run with its own per-batch cache (results/<dataset>/sweeps/
# .projection_cache, git-ignored): it resumes where it was killed on the same machine, and a
# finished cell (results.json of Orig and Rec) is skipped, so rerun the same command in each
# session. SNAPSHOTS=1 makes the L stage one projection at L=1600 that keeps the projection
# after each smaller L (--rec_iters_snapshots; tests/test_detect.py checks these equal their
# own runs): 3.1 h instead of 5.8 h in all, but only on a machine that keeps its cache for
# that long; without it the cheap cells are finished first.
# Then `python scripts/results_detection.py [--dataset=...]` prints the Markdown and writes the
# sweep PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
N="${N:-500}"
DATASET="${DATASET:-mnist}"
[[ -f "flags/$DATASET.cfg" ]] || { echo "error: DATASET: no flags/$DATASET.cfg" >&2; exit 2; }
case "$DATASET" in
  fashion_mnist) RS="1 2 5 10" ;;  # Table 11 has no R=20 row
  *) RS="1 2 5 10 20" ;;
esac
out="results/$DATASET/sweeps"
bb_dir() { echo "results/$DATASET/blackbox/F_none_subE_oracleL100R10_prune0.25k2_eps$1_n$N"; }
bb="${BB:-$(bb_dir 0.3)}"
rec="${REC:-checkpoints/$DATASET/classifier_F_rec}"
EPS_DIRS="${EPS_DIRS:-$(bb_dir 0.1),$(bb_dir 0.15),$(bb_dir 0.2),$(bb_dir 0.25),$(bb_dir 0.3)}"
on() { [[ "$stage" == "$1" || "$stage" == all ]]; }

if on blackbox; then
  for eps in 0.3 0.1 0.15 0.2 0.25; do
    python main.py --flagfile="flags/$DATASET.cfg" --mode=blackbox --defense=none --model=F \
      --sub_model=E --fgsm_eps="$eps" --num_tests="$N" --results_dir="$(bb_dir "$eps")"
  done
fi
[[ "$stage" == blackbox ]] && exit 0
[[ -f "$bb/adversarial.npz" ]] || {
  echo "error: BB: $bb has no adversarial.npz (run: scripts/run_sweeps.sh blackbox)" >&2; exit 2; }
[[ "$rec" == - || -f "$rec/manifest.json" || -f "$rec/export/manifest.json" ]] || {
  echo "error: REC: $rec holds no classifier checkpoint (manifest.json)" >&2; exit 2; }

detect() {  # detect <results dir> [flags]: one detect run, unless it has finished
  local dir="$1"
  shift
  if [[ -f "$dir/results.json" ]]; then
    echo "[run_sweeps] $dir: finished, skipped"
  else
    python main.py "$@" --results_dir="$dir"
  fi
}

cell() {  # cell L R [flags of the Orig run]: Orig (and Rec) at one (L, R)
  local L="$1" R="$2"
  shift 2
  local common=(--flagfile="flags/$DATASET.cfg" --mode=detect --model=F --num_tests="$N"
                --detect_val="$N" --rec_iters="$L" --rec_rr="$R" --nodetect_whitebox
                --adv_sources="$bb")
  detect "$out/orig_L${L}_R${R}_n${N}" "${common[@]}" "$@"
  if [[ "$rec" != - ]]; then
    detect "$out/rec_L${L}_R${R}_n${N}" "${common[@]}" --classifier_dir="$rec"
  fi
}

if on L; then   # Table 8: L with R=10
  if [[ "${SNAPSHOTS:-0}" == 1 ]]; then
    cell 1600 10 --rec_iters_snapshots=25,50,100,200,400,800
  fi
  for L in 25 50 100 200 400 800 1600; do cell "$L" 10; done
fi
if on R; then   # Table 10 (11): R with L=100 (R=10 is the L stage's L=100 cell)
  for R in $RS; do cell 100 "$R"; done
fi
if on eps; then
  # The ROC figure per eps (Figs 4-5 show MNIST at L=400; the project's default is L=200).
  # In the sweep's folder, so the validation, clean and eps 0.3 projections of its L=200 cell
  # are reused from the cache.
  detect "$out/roc_eps_L200_R10_n${N}" --flagfile="flags/$DATASET.cfg" --mode=detect \
    --model=F --num_tests="$N" --detect_val="$N" --nodetect_whitebox --adv_sources="$EPS_DIRS"
fi
python scripts/results_detection.py --plot --dataset="$DATASET"
