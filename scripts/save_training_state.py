"""Copy the latest full training checkpoint of a --train_dir into the repository, so a later
session (on a new machine) can resume the run.

    python scripts/save_training_state.py --train_dir runs/mnist/gan \
        --out checkpoints/mnist/gan_training_state
    # resume later:
    mkdir -p runs/mnist/gan && cp -r checkpoints/mnist/gan_training_state runs/mnist/gan/ckpt
    python main.py --flagfile=flags/mnist.cfg --mode=train_gan

Only the newest checkpoint is kept (about 31 MB for the MNIST GAN: generator, critic, both
Adam optimizers, the random generator, step and wall clock). The copy is made in a temporary
folder and renamed into place, with a manifest of sha256s.
"""

import argparse
import os
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tensorflow as tf  # noqa: E402

from defense_gan.checkpoints import sha256_file  # noqa: E402
from defense_gan.files import write_json_atomic, write_text_atomic  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    latest = tf.train.latest_checkpoint(os.path.join(args.train_dir, "ckpt"))
    if latest is None:
        sys.exit(f"error: --train_dir: no checkpoint in {args.train_dir}/ckpt")
    name = os.path.basename(latest)
    parent = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-state-", dir=parent)
    os.chmod(tmp, 0o755)
    files = [f for f in os.listdir(os.path.dirname(latest)) if f.startswith(name + ".")]
    for f in files:
        shutil.copy2(os.path.join(os.path.dirname(latest), f), os.path.join(tmp, f))
    write_text_atomic(os.path.join(tmp, "checkpoint"),
                      f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    reader = tf.train.load_checkpoint(os.path.join(tmp, name))
    step = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    write_json_atomic(os.path.join(tmp, "manifest.json"), {
        "kind": "training_state", "source": os.path.abspath(args.train_dir), "step": step,
        "files": {f: sha256_file(os.path.join(tmp, f)) for f in sorted(files)}})
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {name} (step {step})")


if __name__ == "__main__":
    main()
