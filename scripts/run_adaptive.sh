#!/usr/bin/env bash
# The "Adaptive evaluation" section of RESULTS.md (issue 16), cheapest first, models A and F,
# 500 test images per cell, L-inf eps 0.3 and Athalye et al.'s L2 budget (--pgd_eps_l2=1.98,
# i.e. their distance 0.005 read as a per-pixel mean square), each gradient mode. Every run
# resumes from its per-batch records (kill and restart at any time; finished runs are skipped
# in seconds). The evaluation always projects at L=200, R=10, float32 with restarts the attack
# never saw; only the attack's own projections are made cheaper where a stage says so.
# Then `python scripts/make_results.py` rebuilds RESULTS.md. Beside another long job, pin each
# to its own core (TF_NUM_INTRAOP_THREADS=1 taskset -c N ...) rather than nice it: a niced job
# on a machine whose cores are all busy hardly runs.
#   scripts/run_adaptive.sh [stage]   stage: baselines | classifier | latent | eot | checks |
#                                            unrolled | full | sweeps_dg | all (default)
# CPU time on a 2-core Zen 5 (idle), estimated from the measured 100-image EOT run (see
# README "Adaptive evaluation"): baselines minutes; classifier ~25 min per cell; latent
# ~40 min per cell; eot ~1.5 h per cell (attack at L=50, R=2, bf16); checks ~4 h; unrolled
# ~3 h per cell; full (attack at L=200, R=10 fp32, 500 images) ~16 h per cell; sweeps_dg
# (robust-accuracy curves through Defense-GAN, six eps per gradient mode, on N_SWEEP images,
# default 100: a figure, not a table cell) ~2 h per model on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
N=500
N_SWEEP="${N_SWEEP:-100}"
L2=1.98
SWEEP=0.05,0.1,0.15,0.2,0.25,0.3
SWEEP_L2=0.5,1,1.5,1.98,2.5,3
CHEAP_ATTACK=(--attack_rec_iters=50 --attack_rec_rr=2 --attack_precision=bfloat16)
wb() { python main.py --flagfile=flags/mnist.cfg --mode=whitebox --num_tests="$N" "$@"; }
on() { [[ "$stage" == "$1" || "$stage" == all ]]; }

if on baselines; then  # no projection: seconds to minutes
  for m in A F; do
    wb --defense=none --attack=pgd --model="$m"
    wb --defense=none --attack=pgd --pgd_norm=l2 --pgd_eps_l2="$L2" --model="$m"
    wb --defense=none --attack=pgd --model="$m" --sweep_eps="$SWEEP"
    wb --defense=none --attack=pgd --pgd_norm=l2 --model="$m" --sweep_eps="$SWEEP_L2"
  done
  # Adversarial training (A-D ship at eps 0.15 and 0.3; F has none, as in the paper): model A,
  # both training eps, the 0.3 one matching the attack's budget.
  for adv_eps in 0.3 0.15; do
    wb --defense=adv_tr --adv_train_eps="$adv_eps" --attack=pgd --model=A
    wb --defense=adv_tr --adv_train_eps="$adv_eps" --attack=pgd --pgd_norm=l2 \
      --pgd_eps_l2="$L2" --model=A
    wb --defense=adv_tr --adv_train_eps="$adv_eps" --attack=pgd --model=A --sweep_eps="$SWEEP"
  done
fi
if on classifier; then  # attack on the undefended classifier, 2-3 projections per image
  for m in A F; do
    wb --defense=defense_gan --gradient=classifier --attack=pgd --model="$m"
    wb --defense=defense_gan --gradient=classifier --attack=pgd --pgd_norm=l2 \
      --pgd_eps_l2="$L2" --model="$m"
  done
fi
if on latent; then  # Athalye et al.'s latent-space attack
  for m in A F; do
    wb --defense=defense_gan --gradient=bpda --attack=latent --model="$m" "${CHEAP_ATTACK[@]}"
  done
fi
if on eot; then  # BPDA + EOT, PGD 40 steps, attack projections L=50 R=2 bf16
  for m in F A; do
    wb --defense=defense_gan --gradient=bpda --eot_samples=1 --attack=pgd --model="$m" \
      "${CHEAP_ATTACK[@]}"
    wb --defense=defense_gan --gradient=bpda --eot_samples=1 --attack=pgd --pgd_norm=l2 \
      --pgd_eps_l2="$L2" --model="$m" "${CHEAP_ATTACK[@]}"
  done
fi
if on checks; then  # more steps, restarts and EOT draws must no longer lower the accuracy
  wb --defense=defense_gan --gradient=bpda --eot_samples=1 --attack=pgd --model=F \
    --pgd_steps=100 "${CHEAP_ATTACK[@]}"
  wb --defense=defense_gan --gradient=bpda --eot_samples=1 --attack=pgd --model=F \
    --pgd_restarts=3 "${CHEAP_ATTACK[@]}"
  wb --defense=defense_gan --gradient=bpda --eot_samples=4 --attack=pgd --model=F \
    "${CHEAP_ATTACK[@]}"
  wb --defense=defense_gan --gradient=bpda --eot_samples=1 --attack=cw --model=F \
    --num_tests=100 "${CHEAP_ATTACK[@]}"
fi
if on unrolled; then  # exact gradient through L=50 attack steps (R=2: ~1.9 GiB of tape)
  for m in F A; do
    wb --defense=defense_gan --gradient=unrolled --attack=pgd --model="$m" "${CHEAP_ATTACK[@]}"
  done
fi
if on full; then  # the issue's "done when" command, then the same at 500 images
  python main.py --mode=whitebox --attack=pgd --defense=defense_gan \
    --gradient=bpda --eot_samples=1 --model=F --num_tests=100
  wb --defense=defense_gan --gradient=bpda --eot_samples=1 --attack=pgd --model=F
fi
if on sweeps_dg; then
  for m in F A; do
    wb --defense=defense_gan --gradient=classifier --attack=pgd --model="$m" \
      --sweep_eps="$SWEEP" --num_tests="$N_SWEEP"
    wb --defense=defense_gan --gradient=bpda --eot_samples=1 --attack=pgd --model="$m" \
      --sweep_eps="$SWEEP" --num_tests="$N_SWEEP" "${CHEAP_ATTACK[@]}"
    wb --defense=defense_gan --gradient=unrolled --attack=pgd --model="$m" \
      --sweep_eps="$SWEEP" --num_tests="$N_SWEEP" "${CHEAP_ATTACK[@]}"
  done
fi
python scripts/make_results.py
