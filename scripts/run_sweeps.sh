#!/usr/bin/env bash
# Detection (Figs 4-5) and the L / R sweeps (Tables 8 and 10) for MNIST, model F, black-box
# FGSM crafted on substitute E, behind the Detection section of RESULTS.md. Each (L, R) is ONE
# detect run: it projects --num_tests validation images (the threshold), the clean test images
# and the attacked images once, and its results.json holds the accuracies of classifier F on
# the reconstructions (no attack, attacked) and the detection AUC. Projections are cached per
# batch under results/mnist/sweeps/.projection_cache, so the script resumes where it was killed,
# and the Defense-GAN-Rec runs (second classifier, same projections) project nothing again.
#
#   scripts/run_sweeps.sh BLACKBOX_EPS0.3_DIR [REC_CLASSIFIER_DIR] [stage]
#     BLACKBOX_EPS0.3_DIR   a --mode=blackbox run folder (model F, substitute E, FGSM eps 0.3)
#                           holding adversarial.npz (x_adv, labels, indices)
#     REC_CLASSIFIER_DIR    the Defense-GAN-Rec classifier F (trained on reconstructions);
#                           "-" or absent: Orig only
#     stage                 L | R | eps | all (default, in that order)
#   EPS_DIRS="dir0.10,dir0.15,dir0.20,dir0.25,dir0.30"  black-box runs at each eps for the
#                           ROC figure (stage eps, L=200, R=10); N=500 images per cell.
#
# Cost (fp32, 2-core Zen 5 idle, about 2.7e-4 s per image per L*R step-restart): 3 x N images
# per cell, so N=500: the L sweep about 1.8 h (one projection at L=1600 serves every L), the
# R sweep (L=100) about 0.3 h, eps 0.5 h.
# Then `python scripts/results_detection.py` prints the Markdown and writes the sweep PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
bb="${1:?usage: scripts/run_sweeps.sh BLACKBOX_EPS0.3_DIR [REC_CLASSIFIER_DIR|-] [stage]}"
rec="${2:--}"
stage="${3:-all}"
N="${N:-500}"
out=results/mnist/sweeps
[[ -f "$bb/adversarial.npz" ]] || { echo "error: $bb has no adversarial.npz" >&2; exit 2; }
[[ "$rec" == - || -f "$rec/manifest.json" || -f "$rec/export/manifest.json" ]] || {
  echo "error: $rec holds no classifier checkpoint (manifest.json)" >&2; exit 2; }

cell() {  # cell L R [flags of the Orig run]: Orig (and Rec) at one (L, R)
  local L="$1" R="$2"
  shift 2
  local common=(--flagfile=flags/mnist.cfg --mode=detect --model=F --num_tests="$N"
                --detect_val="$N" --rec_iters="$L" --rec_rr="$R" --nodetect_whitebox
                --adv_sources="$bb")
  python main.py "${common[@]}" "$@" --results_dir="$out/orig_L${L}_R${R}_n${N}"
  if [[ "$rec" != - ]]; then
    python main.py "${common[@]}" --classifier_dir="$rec" --results_dir="$out/rec_L${L}_R${R}_n${N}"
  fi
}

if [[ "$stage" == L || "$stage" == all ]]; then   # Table 8: L with R=10
  # One projection at L=1600 whose first steps give every smaller L (--rec_iters_snapshots:
  # constant rate, same seeded restarts; tests/test_detect.py checks the cells agree with
  # their own runs), then each smaller L's cell reads its projections from the cache.
  cell 1600 10 --rec_iters_snapshots=25,50,100,200,400,800
  for L in 25 50 100 200 400 800; do cell "$L" 10; done
fi
if [[ "$stage" == R || "$stage" == all ]]; then   # Table 10: R with L=100 (R=10 done above)
  for R in 1 2 5 10 20; do cell 100 "$R"; done
fi
if [[ "$stage" == eps || "$stage" == all ]] && [[ -n "${EPS_DIRS:-}" ]]; then
  # The ROC figure per eps (Figs 4-5 show MNIST at L=400; the project's default is L=200).
  python main.py --flagfile=flags/mnist.cfg --mode=detect --model=F --num_tests="$N" \
    --detect_val="$N" --adv_sources="$EPS_DIRS" \
    --results_dir="results/mnist/detect/F_blackbox_eps_L200_R10_n${N}"
fi
python scripts/results_detection.py --plot
