"""The M2 demo, demos/mnist_m2.py, on a small synthetic MNIST: a run, its record of the labelled
set, resume, the pictures, and one-line errors. Seconds; the real-MNIST run is marked slow."""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyvae.data import MNIST

from conftest import load_script, one_line

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "demos" / "mnist_m2.py"


demo = load_script(SCRIPT)
common = sys.modules["common"]

SMALL = ["--hidden", "16", "--latent-dim", "3", "--batch-size", "40", "--labels", "20"]


def striped_digits(n, seed):
    """n fake digits, class c a vertical stripe of ink in columns 4+2c and 5+2c on faint noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.uniform(0, 10, (n, 28, 28))
    for i, c in enumerate(labels):
        images[i, 6:22, 2 * c + 4:2 * c + 6] = rng.uniform(180, 255, (16, 2))
    return images.reshape(n, 784).astype(np.uint8), labels


@pytest.fixture
def fake_mnist(monkeypatch):
    """The demo reads 200 + 100 striped fake digits instead of MNIST."""
    d = MNIST(*striped_digits(200, 0), *striped_digits(100, 1))
    monkeypatch.setattr(common, "load_mnist", lambda data_dir=None, **kw: d)
    return d


def metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_run_records_the_labelled_set_and_draws_the_pictures(fake_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert demo.main([*SMALL, "--epochs", "2", "--seed", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("test error") == 3 and "test -ELBO" in printed     # per epoch, and the end
    m = metrics(out)
    assert m["model"] == "m2" and len(m["epochs"]) == 2
    assert {"test_error", "test_neg_elbo", "train_ce"} <= set(m["epochs"][-1])
    labelled = m["labelled"]
    chosen = np.array(labelled["indices"])
    assert labelled["n"] == 20 and labelled["per_class"] == [2] * 10
    assert np.bincount(fake_mnist.y_train[chosen], minlength=10).tolist() == [2] * 10
    assert labelled["indices_sha256"] == hashlib.sha256(chosen.astype("<i8").tobytes()).hexdigest()
    assert m["data"] == {"n_train": 180, "n_test": 100, "n_labelled": 20}  # the rest is unlabelled
    counts = np.array(m["confusion_matrix"])
    assert counts.shape == (10, 10) and counts.sum(axis=1).tolist() == [10] * 10
    assert (counts.sum() - np.trace(counts)) / counts.sum() == pytest.approx(m["test_error"], abs=1e-12)
    for name in demo.PICTURES:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_the_seed_draws_the_labelled_set(fake_mnist):
    y = fake_mnist.y_train
    a, rest = demo.split_labelled(y, 20, seed=0)
    assert np.array_equal(a, demo.split_labelled(y, 20, seed=0)[0])
    assert not np.array_equal(a, demo.split_labelled(y, 20, seed=1)[0])
    assert np.array_equal(np.sort(np.r_[a, rest]), np.arange(len(y)))


def test_resume_continues_exactly(fake_mnist, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert demo.main([*SMALL, "--epochs", "2", "--out", str(straight)]) == 0
    assert demo.main([*SMALL, "--epochs", "1", "--out", str(resumed)]) == 0
    assert demo.main([*SMALL, "--epochs", "2", "--out", str(resumed), "--resume"]) == 0
    a, b = metrics(straight), metrics(resumed)
    for key in ("train_loss", "train_ce", "test_error", "test_neg_elbo"):
        assert [e[key] for e in a["epochs"]] == [e[key] for e in b["epochs"]], key
    assert a["confusion_matrix"] == b["confusion_matrix"] and a["labelled"] == b["labelled"]


def test_resume_with_other_labels_is_one_line(fake_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert demo.main([*SMALL, "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert demo.main([*SMALL[:-1], "30", "--epochs", "2", "--out", str(out), "--resume"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and "n_labelled" in line


def test_balance_is_recorded_and_a_resume_must_keep_it(fake_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert demo.main([*SMALL, "--epochs", "1", "--balance", "10", "--out", str(out)]) == 0
    m = metrics(out)
    assert m["config"]["balance"] == 10.0
    assert 0.0 <= m["epochs"][-1]["train_class_kl"] <= np.log(10)
    assert "class KL" in capsys.readouterr().out
    assert demo.main([*SMALL, "--epochs", "2", "--out", str(out), "--resume"]) == 2   # --balance 0 now
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and "balance: 10.0 in the checkpoint, 0.0 now" in line


def test_default_alpha_is_the_papers_rescaled():
    """0.1 N for the summed objective, per labelled image averaged over N_l: 0.1 N / N_u with our means."""
    assert demo.default_alpha(100, 59900) == pytest.approx(0.1 * 60000 / 59900)
    assert demo.default_alpha(3000, 57000) == pytest.approx(0.1 * 60000 / 57000)


def exit_status(argv) -> int:
    """main's exit status, whether it returns it or argparse exits with it."""
    try:
        return demo.main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("argv, words", [
    (["--labels", "25"], "multiple of 10: pass the same number of each digit, e.g. --labels 20"),
    (["--labels", "205"], "e.g. --labels 190 (the most this data allows: class 0 has 20 images"),
    (["--labels", "210"], "class 0 has only 20 images: pass at most --labels 190"),
    (["--labels", "200"], "all 200 training images are labelled: M2 needs unlabelled ones too; pass at most --labels 190"),
    (["--labels", "5"], "--labels: must be an integer >= 10, got 5"),
    (["--alpha", "-1"], "--alpha"),
    (["--alpha", "nan"], "--alpha"),
    (["--balance", "-1"], "--balance"),
])
def test_bad_settings_are_one_line(fake_mnist, tmp_path, capsys, argv, words):
    assert exit_status([*SMALL[:-2], *argv, "--out", str(tmp_path / "run")]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("error: ") and words in err
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_the_labels_a_refusal_suggests_are_accepted(fake_mnist, tmp_path, capsys):
    """--labels 60001 used to suggest --labels 60000, which then failed on the per-digit count: the
    suggestion is the largest count the data allows (the same for each digit, some left unlabelled)."""
    assert exit_status([*SMALL[:-2], "--labels", "60001", "--out", str(tmp_path / "run")]) == 2
    line = one_line(capsys.readouterr().err)
    suggested = line.split("e.g. --labels ")[1].split()[0]
    assert suggested == "190"                                       # 20 images of each digit, 200 in all
    assert demo.main([*SMALL[:-2], "--labels", suggested, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    assert metrics(tmp_path / "run")["labelled"]["per_class"] == [19] * 10


def test_largest_balanced_count_leaves_images_unlabelled():
    assert demo.largest_balanced(np.arange(200) % 10) == 190                  # 20 each: 200 would be all
    assert demo.largest_balanced(np.r_[np.arange(200) % 10, [3]]) == 200      # one image left over
    assert demo.largest_balanced(np.arange(9)) == 0                           # a digit missing


@pytest.mark.slow
def test_smoke_run_on_real_mnist(tmp_path):
    """Real MNIST: 1,000 training images (100 labelled), two short epochs of a small model."""
    out = tmp_path / "run"
    assert demo.main(["--limit", "1000", "--labels", "100", "--hidden", "64", "--epochs", "2",
                      "--batch-size", "50", "--lr", "3e-3", "--alpha", "1", "--out", str(out)]) == 0
    m = metrics(out)
    assert m["data"] == {"n_train": 900, "n_test": 1000, "n_labelled": 100}
    assert m["test_error"] < 0.7                                  # chance is 0.9; this run: 0.50
