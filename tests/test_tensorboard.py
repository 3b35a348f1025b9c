"""A real TensorBoard server reads the logs of a smoke training run (loopback only)."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

SCALARS = {"critic_loss", "generator_loss", "gradient_penalty", "wasserstein",
           "steps_per_second"}
RUN = "logs"  # the event files live in <train_dir>/logs
STARTUP_SECONDS = 60

# Never through an HTTP proxy from the environment: the server is on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with _OPENER.open(url, timeout=10) as response:
        return json.loads(response.read().decode("utf-8"))


def tags(base: str, plugin: str) -> dict:
    """{run: set of tags} from /data/plugin/<plugin>/tags."""
    return {run: set(run_tags) for run, run_tags in
            get_json(f"{base}/data/plugin/{plugin}/tags").items()}


@pytest.fixture(scope="module")
def tensorboard(smoke_run, tmp_path_factory):
    """Base URL of a TensorBoard serving the smoke run, once it lists all expected tags."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("tensorboard") / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(smoke_run.train_dir),
         "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + STARTUP_SECONDS
        while True:
            try:
                if (SCALARS <= tags(base, "scalars").get(RUN, set())
                        and "samples" in tags(base, "images").get(RUN, set())):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass  # not listening yet, or still loading
            assert proc.poll() is None, (f"tensorboard exited {proc.returncode}:\n"
                                         + log_path.read_text())
            if time.time() > deadline:
                break  # let the tests report what is (not) listed
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def test_tensorboard_lists_the_training_scalars(tensorboard):
    listed = tags(tensorboard, "scalars")
    assert RUN in listed, listed
    assert SCALARS <= listed[RUN], listed[RUN]


def test_tensorboard_serves_scalar_values_at_the_logged_steps(tensorboard):
    query = urllib.parse.urlencode({"run": RUN, "tag": "critic_loss"})
    points = get_json(f"{tensorboard}/data/plugin/scalars/scalars?{query}")
    assert [step for _, step, _ in points] == [2, 4]  # smoke.cfg: --log_every=2, 4 iterations
    assert all(isinstance(value, float) for _, _, value in points)


def test_tensorboard_lists_the_sample_image_grid(tensorboard):
    listed = tags(tensorboard, "images")
    assert "samples" in listed.get(RUN, set()), listed
