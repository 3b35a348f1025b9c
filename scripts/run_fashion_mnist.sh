#!/usr/bin/env bash
# Fashion-MNIST end to end (issue 15) in dependency order. Every stage resumes where it was
# killed and skips what is finished, so rerun the same command in each session.
#   scripts/run_fashion_mnist.sh [stage]
#   stage: gan | ship_gan | baselines | rec | whitebox | blackbox | sweeps | all (default, in that
#          order; all stops after gan while the generator is short of ITERS)
#   ITERS: generator iterations to train and ship (default 20000, as the MNIST generator)
#
#   gan        train the WGAN-GP to ITERS in runs/fashion_mnist/gan (first from the committed
#              training state, checkpoints/fashion_mnist/gan_training_state, if runs/ is empty);
#              0.86-0.97 iterations/s on one Zen 5 core, 0.2-0.35 on 2 AVX2 Zen 1 cores
#   ship_gan   replace checkpoints/fashion_mnist/gan by the export at ITERS (refused below it)
#              and redraw docs/fashion_mnist_samples.png; runs of the old generator drop out of
#              RESULTS.md (make_results.py checks the generator's sha256)
#   baselines  adversarially trained A-D (eps 0.3, 0.15) and MagNet: no generator needed
#   rec        the Defense-GAN-Rec classifiers A-D, F (training-set reconstructions: a CPU with
#              AVX512-BF16 or AMX, see train_rec_classifiers.sh)
#   whitebox   the white-box table (scripts/run_whitebox.sh)
#   blackbox   Table 2 and Table 3 (scripts/run_blackbox_tables.sh)
#   sweeps     Tables 9 and 11 and the detection AUCs (scripts/run_sweeps.sh)
# Each trained classifier is shipped (copied from runs/<...>/export to checkpoints/) as soon as
# it is finished, so the stages after it find it. Then `python scripts/make_results.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
ITERS="${ITERS:-20000}"
export DATASET=fashion_mnist
runs=runs/fashion_mnist
on() { [[ "$stage" == "$1" || "$stage" == all ]]; }
step_of() {  # the generator iterations recorded in a manifest, or 0
  python -c "import json,sys; print(json.load(open(sys.argv[1])).get('iterations', 0))" \
    "$1" 2>/dev/null || echo 0
}
ship() {  # ship <name>: runs/fashion_mnist/<name>/export -> checkpoints/fashion_mnist/<name>
  local src="$runs/$1/export" dst="checkpoints/fashion_mnist/$1"
  [[ -f "$src/manifest.json" ]] || { echo "not shipped: $src has no manifest.json"; return 0; }
  rm -rf "$dst.tmp"
  cp -r "$src" "$dst.tmp"
  rm -rf "$dst"
  mv "$dst.tmp" "$dst"
  echo "shipped $dst"
}
ship_new() {  # ship the finished runs whose checkpoints are not shipped yet
  local name
  for name in "$@"; do
    [[ -f "checkpoints/fashion_mnist/$name/manifest.json" ]] || ship "$name"
  done
}

if on gan; then
  if [[ ! -d "$runs/gan/ckpt" && -d checkpoints/fashion_mnist/gan_training_state ]]; then
    mkdir -p "$runs/gan"
    cp -r checkpoints/fashion_mnist/gan_training_state "$runs/gan/ckpt"
  fi
  python main.py --flagfile=flags/fashion_mnist.cfg --mode=train_gan --iterations="$ITERS"
fi
if on ship_gan; then
  trained=$(step_of "$runs/gan/export/manifest.json")
  shipped=$(step_of checkpoints/fashion_mnist/gan/manifest.json)
  if (( trained < ITERS )); then
    echo "error: ship_gan: $runs/gan/export holds ${trained} generator iterations (none if it" \
      "has no manifest.json), fewer than ITERS=$ITERS: run the gan stage first" >&2
    exit 2
  fi
  if (( shipped < trained )); then
    ship gan
    python scripts/sample_grid.py --dataset=fashion_mnist --gan_dir=checkpoints/fashion_mnist/gan \
      --out=docs/fashion_mnist_samples.png
  fi
fi
if on baselines; then
  scripts/train_baselines.sh
  ship_new classifier_{A,B,C,D}_adv classifier_{A,B,C,D}_adv0.3 magnet
fi
if on rec; then
  scripts/train_rec_classifiers.sh
  ship_new classifier_{A,F,B,C,D}_rec
fi
if on whitebox; then scripts/run_whitebox.sh; fi
if on blackbox; then scripts/run_blackbox_tables.sh; fi
if on sweeps; then scripts/run_sweeps.sh; fi
