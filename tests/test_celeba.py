"""CelebA (--dataset=celeba): the data set spec, the release's 64x64x3 networks, the two data
sources (a folder of aligned images with list_attr_celeba.txt; TFDS celeb_a, offline with
tfds.testing.mock_data), one-line refusals of a bad --data_dir, and the whole path
data -> train_gan -> train_classifier -> whitebox with Defense-GAN through main.py on
generated images (flags/smoke.cfg: tiny batches, L=3, R=2)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import (REPO, SMOKE_CLASSIFIER_MODEL as MODEL, SMOKE_FLAGFILE, error_line,
                      run_main_here, run_pipeline, tree_digest)
from defense_gan import data, dataset_spec, networks
from defense_gan.errors import ConfigError

CELEBA = dataset_spec.get("celeba")
ATTRIBUTES = ("5_o_Clock_Shadow", "Male", "Smiling")
SPLIT_SIZES = (24, 8, 8)  # train, validation, test (num_tests of smoke.cfg is 8)
ALIGNED_SHAPE = (218, 178, 3)  # CelebA's aligned images: the 108x108 center crop is exercised


def write_celeba_folder(folder, sizes=SPLIT_SIZES, partition=True, seed=0):
    """Random aligned-size images (JPEG and PNG) 000001.jpg ... with an attribute file whose
    'Male' column alternates 1, -1 (and a partition file). Returns the Male labels (0/1)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = sum(sizes)
    male = np.arange(n) % 2 == 0
    lines = [str(n), " ".join(ATTRIBUTES)]
    split_lines = []
    for i in range(n):
        name = f"{i + 1:06d}." + ("png" if i % 5 == 4 else "jpg")
        image = tf.constant(rng.integers(0, 256, ALIGNED_SHAPE, dtype=np.uint8))
        encoded = tf.io.encode_png(image) if name.endswith("png") else tf.io.encode_jpeg(image)
        (folder / name).write_bytes(encoded.numpy())
        values = [rng.choice(["-1", "1"]), "1" if male[i] else "-1", rng.choice(["-1", "1"])]
        lines.append(f"{name} " + " ".join(values))
        split_lines.append(f"{name} {0 if i < sizes[0] else 1 if i < sizes[0] + sizes[1] else 2}")
    (folder / data.CELEBA_ATTR_FILE).write_text("\n".join(lines) + "\n")
    if partition:
        (folder / data.CELEBA_PARTITION_FILE).write_text("\n".join(split_lines) + "\n")
    return male.astype(np.int64)


@pytest.fixture(scope="module")
def celeba_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("celeba") / "aligned"
    labels = write_celeba_folder(folder)
    return folder, labels


# --- spec and networks --------------------------------------------------------------------------

def test_celeba_spec_is_the_releases_64x64x3_tanh_gender_setting_with_r_2():
    assert CELEBA.image_shape == (64, 64, 3) and CELEBA.num_classes == 2
    assert CELEBA.pixel_range == (-1.0, 1.0) and CELEBA.output_activation == "tanh"
    assert (CELEBA.clip_min, CELEBA.clip_max) == (-1.0, 1.0)
    assert CELEBA.tfds_name == "celeb_a" and CELEBA.bundled_files is None


def test_every_flagfile_sets_the_restarts_of_its_data_sets_spec():
    for name, spec in dataset_spec.SPECS.items():
        lines = open(os.path.join(REPO, "flags", f"{name}.cfg")).read().splitlines()
        assert f"--dataset={name}" in lines
        assert f"--rec_rr={spec.default_rec_rr}" in lines


def test_every_data_set_gets_a_generator_of_its_image_shape():
    for spec in dataset_spec.SPECS.values():
        generator = networks.generator(spec, latent_dim=8)
        assert generator(tf.zeros([1, 8])).shape[1:] == spec.image_shape, spec.name


def test_celeba_generator_maps_z_to_64x64x3_images_in_minus_one_one_with_the_release_layers():
    generator = networks.generator(CELEBA, latent_dim=128)
    assert isinstance(generator, networks.CelebAGenerator)
    # Linear 128->4096, ConvT 256->128, 128->64, 64->64, 64->3 (5x5, with biases).
    expected = (128 * 4096 + 4096) + (25 * 256 * 128 + 128) + (25 * 128 * 64 + 64) + \
        (25 * 64 * 64 + 64) + (25 * 64 * 3 + 3)
    assert generator.count_params() == expected == 1_659_843
    x = generator(tf.random.stateless_normal([4, 128], seed=[0, 1]) * 30.0)
    assert x.shape == (4, 64, 64, 3) and x.dtype == tf.float32
    assert float(tf.reduce_min(x)) < 0.0 and float(tf.reduce_max(x)) <= 1.0
    assert float(tf.reduce_min(x)) >= -1.0


def test_celeba_generator_last_layer_equals_keras_transposed_convolution():
    """The subpixel form of the last layer computes what Conv2DTranspose computes."""
    generator = networks.generator(CELEBA, latent_dim=16)
    z = tf.random.stateless_normal([2, 16], seed=[0, 2])
    h = generator.deconv3(generator.deconv2(generator.deconv1(generator.reshape(
        generator.fc(z)))))
    reference = tf.tanh(generator.deconv4(h))
    np.testing.assert_allclose(generator(z).numpy(), reference.numpy(), atol=1e-5)


@pytest.mark.parametrize("model", list("ABCDEF"))
def test_classifiers_a_to_f_take_64x64x3_images_and_give_two_logits(model):
    classifier = networks.classifier(CELEBA, model)
    logits = classifier(tf.random.stateless_uniform([2, 64, 64, 3], seed=[0, 3], minval=-1.0))
    assert logits.shape == (2, 2)
    assert classifier.stack[-1].kernel.shape[-1] == 2


def test_critic_scores_one_number_per_64x64x3_image():
    critic = networks.critic(CELEBA)
    assert critic(tf.zeros([3, 64, 64, 3])).shape == (3,)
    assert critic.out.kernel.shape == (8 * 8 * 256, 1)


# --- the folder source ----------------------------------------------------------------------

def test_folder_source_splits_by_the_partition_file_and_labels_male_as_one(celeba_dir):
    folder, male = celeba_dir
    splits = data.load("celeba", data_dir=str(folder))
    n_train, n_val, _ = SPLIT_SIZES
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == SPLIT_SIZES
    for x in (splits.x_train, splits.x_val, splits.x_test):
        assert x.dtype == np.uint8 and x.shape[1:] == (64, 64, 3)
    np.testing.assert_array_equal(np.concatenate([splits.y_train, splits.y_val, splits.y_test]),
                                  male)
    assert splits.y_train.dtype == np.int64


def test_train_limit_decodes_only_the_first_training_images(celeba_dir):
    folder, male = celeba_dir
    splits = data.load("celeba", data_dir=str(folder), train_limit=8)
    assert len(splits.x_train) == 8 and len(splits.x_test) == SPLIT_SIZES[2]
    np.testing.assert_array_equal(splits.y_train, male[:8])


def test_crop_keeps_the_centered_108_square_and_resizes_it_to_64():
    """An aligned-size image that is 200 inside its centered 108x108 square and 0 outside
    becomes a uniform 200 image: nothing of the border survives the crop."""
    image = np.zeros(ALIGNED_SHAPE, np.uint8)
    top, left = (218 - 108) // 2, (178 - 108) // 2  # 55, 35
    image[top:top + 108, left:left + 108] = 200
    out = data.celeba_crop_resize(tf.constant(image)).numpy()
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out == 200).all()
    image[top, left] = 0  # a corner of the square is in the crop
    assert data.celeba_crop_resize(tf.constant(image)).numpy()[0, 0, 0] < 200


def test_pipelines_scale_celeba_pixels_to_minus_one_one_as_the_release():
    x = data.to_float(np.array([0, 51, 255], np.uint8), CELEBA.pixel_range).numpy()
    np.testing.assert_allclose(x, 2.0 * (np.array([0, 51, 255]) / 255.0 - 0.5), atol=1e-6)
    batch = next(iter(data.resumable_batches(np.full((4, 64, 64, 3), 255, np.uint8), 2, 0,
                                             pixel_range=CELEBA.pixel_range)))
    assert float(tf.reduce_min(batch)) == 1.0


def test_without_a_partition_file_the_release_split_by_image_number_is_used(tmp_path):
    folder = tmp_path / "numbered"
    folder.mkdir()
    names = ["162770.jpg", "162771.jpg", "182637.jpg", "182638.jpg"]  # train, val, val, test
    image = tf.io.encode_jpeg(tf.zeros(ALIGNED_SHAPE, tf.uint8)).numpy()
    for name in names:
        (folder / name).write_bytes(image)
    (folder / data.CELEBA_ATTR_FILE).write_text(
        "4\nMale\n" + "".join(f"{n} {1 if i % 2 else -1}\n" for i, n in enumerate(names)))
    splits = data.load_celeba_dir(str(folder))
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (1, 2, 1)
    assert list(splits.y_val) == [1, 0]


def test_images_may_sit_in_img_align_celeba_and_the_attribute_file_in_anno(tmp_path):
    folder = tmp_path / "official_layout"
    write_celeba_folder(folder / "img_align_celeba", sizes=(2, 1, 1))
    (folder / "Anno").mkdir()
    (folder / "img_align_celeba" / data.CELEBA_ATTR_FILE).rename(
        folder / "Anno" / data.CELEBA_ATTR_FILE)
    (folder / "img_align_celeba" / data.CELEBA_PARTITION_FILE).rename(
        folder / data.CELEBA_PARTITION_FILE)
    splits = data.load_celeba_dir(str(folder))
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (2, 1, 1)


@pytest.mark.parametrize("remove, needle", [
    (data.CELEBA_ATTR_FILE, data.CELEBA_ATTR_FILE),
    ("images", "has no images"),
])
def test_folder_without_attribute_file_or_images_raises_config_error_naming_data_dir(
        tmp_path, remove, needle):
    folder = tmp_path / "broken"
    write_celeba_folder(folder, sizes=(2, 1, 1))
    for path in folder.iterdir():
        if path.name == remove or (remove == "images" and path.suffix in (".jpg", ".png")):
            path.unlink()
    with pytest.raises(ConfigError, match=needle) as err:
        data.load_celeba_dir(str(folder))
    assert str(err.value).startswith("--data_dir: ") and "\n" not in str(err.value)


def test_undecodable_image_raises_config_error_naming_the_file(tmp_path):
    folder = tmp_path / "corrupt"
    write_celeba_folder(folder, sizes=(2, 1, 1))
    (folder / "000002.jpg").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="000002.jpg' cannot be decoded"):
        data.load_celeba_dir(str(folder))


def test_main_refuses_a_folder_without_attribute_file_in_one_line_and_writes_nothing(
        tmp_path):
    folder = tmp_path / "celeba"
    write_celeba_folder(folder, sizes=(2, 1, 1))
    (folder / data.CELEBA_ATTR_FILE).unlink()
    before = tree_digest(tmp_path)
    rc, _, err = run_main_here(f"--flagfile={SMOKE_FLAGFILE}", "--dataset=celeba",
                          f"--data_dir={folder}", "--mode=train_gan",
                          f"--train_dir={tmp_path / 'train'}")
    assert rc == 2
    line = error_line(err)
    assert line.startswith("error: --data_dir: ") and data.CELEBA_ATTR_FILE in line
    assert tree_digest(tmp_path) == before


# --- the TFDS source ----------------------------------------------------------------------------

def test_tfds_celeb_a_loads_offline_cropped_to_64x64_with_the_male_attribute():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        splits = data.load("celeba", "tfds")
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (5, 5, 5)
    for x, y in ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val),
                 (splits.x_test, splits.y_test)):
        assert x.dtype == np.uint8 and x.shape[1:] == (64, 64, 3)
        assert y.dtype == np.int64 and set(np.unique(y)) <= {0, 1}
    assert splits.x_train.max() > 128  # pixels 0..255, not rescaled


# --- end to end through main.py -------------------------------------------------------------

@pytest.fixture(scope="module")
def celeba_e2e(tmp_path_factory, celeba_dir):
    """train_gan (2 iterations), train_classifier (model E, 1 epoch) and whitebox (FGSM
    through Defense-GAN with BPDA, L=3, R=2) on the generated folder, through main.py."""
    folder, _ = celeba_dir
    root = tmp_path_factory.mktemp("celeba_e2e")
    common = (f"--flagfile={SMOKE_FLAGFILE}", "--dataset=celeba", f"--data_dir={folder}")
    run_pipeline(root, *common, model=MODEL)
    return root


def test_e2e_exports_a_celeba_generator_and_a_two_class_classifier(celeba_e2e):
    g = json.loads((celeba_e2e / "gan" / "export" / "manifest.json").read_text())
    assert (g["dataset"], g["architecture"], g["iterations"]) == (
        "celeba", "release_celeba_generator", 2)
    c = json.loads((celeba_e2e / "classifier" / "export" / "manifest.json").read_text())
    assert (c["dataset"], c["model"]) == ("celeba", MODEL)
    assert 0.0 <= c["metrics"]["test_accuracy"] <= 1.0
    assert (celeba_e2e / "gan" / "samples.png").is_file()


def test_e2e_whitebox_attacks_in_minus_one_one_with_the_releases_eps(celeba_e2e):
    result = json.loads((celeba_e2e / "whitebox" / "results.json").read_text())
    settings, metrics = result["settings"], result["metrics"]
    assert metrics["num_images"] == 8 and settings["rec_rr"] == 2
    assert (settings["attack_settings"]["clip_min"], settings["attack_settings"]["clip_max"]) \
        == (-1.0, 1.0)
    with np.load(celeba_e2e / "whitebox" / "records" / "examples.npz") as f:
        clean, adv, rec_adv, rec_clean = (f[f"arr_{i}"] for i in range(4))
    assert clean.shape[1:] == (64, 64, 3)
    assert clean.min() < -0.5 and adv.min() >= -1.0 and adv.max() <= 1.0
    assert rec_clean.min() >= -1.0 and rec_clean.max() <= 1.0
    # FGSM moved every image by eps (0.3, in [-1, 1] units) where it was not clipped.
    assert np.abs(adv - clean).max() == pytest.approx(0.3, abs=1e-5)
    assert metrics["mean_linf"] == pytest.approx(0.3, abs=1e-5)
    assert (celeba_e2e / "whitebox" / "examples.png").is_file()


# The same path reading TFDS celeb_a, faked offline by tfds.testing.mock_data inside each
# main.py process (the mock patches the process that loads the data).
MOCKED_MAIN = ("import sys, tensorflow_datasets as tfds\n"
               "from defense_gan.cli_main import run\n"
               "with tfds.testing.mock_data(num_examples=24):\n"
               "    run()\n")


def run_main_with_mock_tfds(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-c", MOCKED_MAIN, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def test_e2e_on_mocked_tfds_celeb_a_trains_and_defends_through_main(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    common = (f"--flagfile={SMOKE_FLAGFILE}", "--dataset=celeba", "--data_source=tfds")
    run_pipeline(tmp_path, *common, model=MODEL, runner=run_main_with_mock_tfds)
    result = json.loads((tmp_path / "whitebox" / "results.json").read_text())
    assert result["flags"]["data_source"] == "tfds" and result["metrics"]["num_images"] == 8
    with np.load(tmp_path / "whitebox" / "records" / "examples.npz") as f:
        assert f["arr_0"].shape[1:] == (64, 64, 3)


@pytest.mark.parametrize("mode", ["blackbox", "detect"])
def test_celeba_in_the_28x28_only_modes_is_refused_naming_dataset(mode):
    from defense_gan import config
    with pytest.raises(ConfigError, match=f"^--dataset: celeba has no --mode={mode}"):
        config.validate(config.Config(mode=mode, dataset="celeba"))
