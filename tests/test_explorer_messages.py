"""`python -m tinyvae.explorer RUN_DIR`: every refusal is one line that names the problem and a fix
the explorer's user can act on, and the page's caption is the checkpoint's own record.

The runs are real ones (train.fit, one to three epochs on 60 random images) and
MNIST is a fake of 60 test images, so each test takes a fraction of a second.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line

from tinyvae import VAEConfig, explorer, get_backend
from tinyvae.checkpoint import CHECKPOINT_FILE, METRICS_FILE, load_checkpoint
from tinyvae.core.ae import AEConfig
from tinyvae.core.m2 import M2Config
from tinyvae.data import MNIST, to_unit_interval
from tinyvae.train import TrainConfig, fit

REPO = Path(__file__).resolve().parents[1]
DRAWS = "the explorer draws VAE and CVAE runs with a 2-D latent"
RNG = np.random.default_rng(0)
FAKE = MNIST(RNG.integers(0, 256, (60, 784), dtype=np.uint8), np.arange(60) % 10,
             RNG.integers(0, 256, (60, 784), dtype=np.uint8), np.arange(60) % 10)


def train(config, out, epochs=1, **kwargs):
    tconfig = TrainConfig(epochs=epochs, batch_size=30, iw_k=0)
    x = to_unit_interval(FAKE.x_train)
    fit(x, to_unit_interval(FAKE.x_test), config, tconfig, get_backend("numpy", seed=tconfig.seed), out,
        progress=False, **kwargs)
    return out


def small(cls=VAEConfig, latent=2, **kw):
    return cls(input_dim=784, enc_hidden=(8,), dec_hidden=(8,), latent_dim=latent, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished runs of each kind, made once; a test copies the one it changes (`copy_run`)."""
    root = tmp_path_factory.mktemp("runs")
    y = np.arange(60) % 10
    x_labelled = to_unit_interval(FAKE.x_train[:20])
    return {
        "vae": train(small(), root / "vae", epochs=3),
        "vae_latent3": train(small(latent=3), root / "vae_latent3"),
        # demos/mnist_cvae.py's layout: RUN/cvae and RUN/vae, each a run, and no checkpoint in RUN
        "cvae_demo": (train(small(n_classes=10), root / "cvae_demo" / "cvae", y_train=y, y_test=y).parent,
                      train(small(), root / "cvae_demo" / "vae"))[1].parent,
        "ae": train(small(AEConfig), root / "ae"),
        "m2": train(small(M2Config, cls_hidden=(8,)), root / "m2", y_test=y, labelled=(x_labelled, y[:20])),
    }


@pytest.fixture
def copy_run(runs, tmp_path):
    def copy(name, to="run"):
        return Path(shutil.copytree(runs[name], tmp_path / to))
    return copy


@pytest.fixture(autouse=True)
def fake_mnist(monkeypatch):
    """load_mnist returns the fake; `calls` counts the loads (a refusal should come before any)."""
    calls = []

    def load(data_dir=None, **kwargs):
        calls.append(data_dir)
        return FAKE

    monkeypatch.setattr(explorer, "load_mnist", load)
    return calls


def explore(capsys, *args):
    """(exit status, stdout, stderr) of `python -m tinyvae.explorer ARGS`, run in-process."""
    rc = explorer.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def refusal(capsys, *args) -> str:
    """The one-line error of a refused explorer call, without its 'error: ' (exit status 2, nothing written)."""
    rc, out, err = explore(capsys, *args)
    assert rc == 2 and out == "", (rc, out, err)
    line = one_line(err)
    assert line.startswith("error: ") and "Traceback" not in err
    return line[len("error: "):]


def demo_commands_removed(message: str) -> str:
    """The message without its whole commands that make a run ("python demos/mnist.py --latent-dim 2 ...")."""
    return re.sub(r"python demos/\w+\.py(?: --[\w-]+(?: (?!--)[^\s,;]+)?)*", "COMMAND", message)


def assert_names_only_what_the_explorer_accepts(message: str):
    """No training flag (--resume, --overwrite, ...) outside a whole demo command; --resume nowhere."""
    assert "--resume" not in message, message
    stray = set(re.findall(r"--[\w-]+", demo_commands_removed(message))) - {"--out", "--data-dir"}
    assert not stray, f"{message!r} names {stray}, which the explorer does not accept"


def page_record(page: Path) -> dict:
    text = page.read_text()
    return json.loads(re.search(r'id="model-data">(.*?)</script>', text, re.DOTALL).group(1))


# ---------------------------------------------------------------------------
# 1. An unreadable or ill-typed metrics.json: one line naming it, before MNIST is read
# ---------------------------------------------------------------------------

BAD_METRICS = {
    "truncated": b'{"model": "vae", "epochs": [{"epoch": 1, "test_neg_el',
    "empty": b"",
    "an array": b"[1, 2]",
    "null": b"null",
    "a number": b"3.5",
    "a string": b'"metrics"',
    "epochs not a list": b'{"epochs": 3}',
    "an epoch record not an object": b'{"epochs": [1]}',
    "test_neg_elbo not a number": b'{"epochs": [{"epoch": 1, "test_neg_elbo": "low"}]}',
    "not text": b"\x89PNG\r\n\x1a\n\xff\xfe\x00",
}


@pytest.mark.parametrize("name", sorted(BAD_METRICS))
def test_an_unreadable_metrics_json_is_one_line_naming_it(copy_run, capsys, fake_mnist, name):
    run = copy_run("vae")
    (run / METRICS_FILE).write_bytes(BAD_METRICS[name])
    message = refusal(capsys, run)
    assert message.startswith(f"{run / METRICS_FILE} ") and "delete it" in message
    assert_names_only_what_the_explorer_accepts(message)
    assert fake_mnist == [] and not (run / explorer.EXPLORER_FILE).exists()


@pytest.mark.parametrize("node, says", [("folder", "is a folder, not a file"),
                                         ("fifo", "is not a regular file"),
                                         ("device", "is not a regular file")])
def test_a_metrics_json_that_is_no_file_is_one_line_naming_it(copy_run, capsys, node, says):
    """A FIFO or /dev/zero is refused, not read: reading it would never end."""
    run = copy_run("vae")
    path = run / METRICS_FILE
    path.unlink()
    if node == "folder":
        path.mkdir()
    elif node == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    else:
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero here")
        path.symlink_to("/dev/zero")
    assert refusal(capsys, run).startswith(f"{path} {says}: delete it")


def test_a_truncated_metrics_json_from_the_command_line_is_no_traceback(copy_run):
    run = copy_run("vae")
    (run / METRICS_FILE).write_text(BAD_METRICS["truncated"].decode())
    done = subprocess.run([sys.executable, "-m", "tinyvae.explorer", str(run)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert one_line(done.stderr).startswith(f"error: {run / METRICS_FILE} is not valid JSON")


def test_a_metrics_json_without_epochs_is_not_an_error(copy_run, capsys):
    run = copy_run("vae")
    (run / METRICS_FILE).write_text("{}")
    rc, out, err = explore(capsys, run)
    assert rc == 0 and err == "" and f"wrote {run / explorer.EXPLORER_FILE}" in out


# ---------------------------------------------------------------------------
# 2. Messages that name only what the explorer accepts
# ---------------------------------------------------------------------------


def not_a_run(tmp_path, runs, case) -> tuple:
    """(RUN_DIR argument, what its message must say) for each kind of folder that is not a run."""
    if case == "missing":
        d = tmp_path / "nowhere"
        return d, [f"no checkpoint at {d / CHECKPOINT_FILE}: {d} does not exist",
                   f"python demos/mnist.py --latent-dim 2 --out {d}"]
    if case == "empty":
        d = tmp_path / "empty"
        d.mkdir()
        return d, [f"no checkpoint at {d / CHECKPOINT_FILE}: {d} holds no finished run",
                   f"train a model there first with python demos/mnist.py --latent-dim 2 --out {d}"]
    if case == "metrics only":                    # a run killed before its first epoch ended, say
        d = tmp_path / "metrics_only"
        d.mkdir()
        (d / METRICS_FILE).write_text("{}")
        return d, [f"no checkpoint at {d / CHECKPOINT_FILE}", "python demos/mnist.py --latent-dim 2 --out"]
    if case == "a file":
        f = tmp_path / "notes.txt"
        f.write_text("x")
        return f, [f"{f} is a file, not a run folder", CHECKPOINT_FILE]
    if case == "the checkpoint file":
        run = Path(shutil.copytree(runs["vae"], tmp_path / "run"))
        return run / CHECKPOINT_FILE, [f"python -m tinyvae.explorer {run}"]
    if case == "checkpoint is a folder":
        d = tmp_path / "odd"
        (d / CHECKPOINT_FILE).mkdir(parents=True)
        return d, [f"{d / CHECKPOINT_FILE} is a folder, not a checkpoint file"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "empty", "metrics only", "a file", "the checkpoint file",
                                  "checkpoint is a folder"])
def test_a_folder_that_is_not_a_run_says_what_to_pass(tmp_path, runs, capsys, fake_mnist, case):
    arg, says = not_a_run(tmp_path, runs, case)
    message = refusal(capsys, arg)
    for text in says:
        assert text in message, (text, message)
    assert_names_only_what_the_explorer_accepts(message)
    assert fake_mnist == []


def test_a_folder_of_runs_points_to_its_subfolders(runs, capsys):
    parent = runs["cvae_demo"]                    # runs/cvae: cvae/ and vae/, no checkpoint of its own
    message = refusal(capsys, parent)
    assert message.startswith(f"no checkpoint at {parent / CHECKPOINT_FILE}, but its subfolders hold runs")
    assert f"{parent / 'cvae'}, {parent / 'vae'}" in message
    assert message.endswith(f"python -m tinyvae.explorer {parent / 'cvae'}")
    assert_names_only_what_the_explorer_accepts(message)
    rc, out, _ = explore(capsys, parent / "cvae")          # and the one it names is drawn
    assert rc == 0 and f"wrote {parent / 'cvae' / explorer.EXPLORER_FILE}" in out


def test_subfolders_of_runs_it_cannot_draw_say_why(runs, tmp_path, capsys):
    parent = tmp_path / "family"
    shutil.copytree(runs["ae"], parent / "ae")
    shutil.copytree(runs["vae_latent3"], parent / "vae")
    message = refusal(capsys, parent)
    assert f"{parent / 'ae'} holds an autoencoder (ae) run" in message
    assert f"{parent / 'vae'} holds a model with latent_dim=3" in message
    assert DRAWS in message and "python demos/mnist.py --latent-dim 2 --out DIR" in message
    assert_names_only_what_the_explorer_accepts(message)


def rewrite_checkpoint(path: Path, change_meta=None, change_arrays=None):
    """Write checkpoint `path` again with its JSON record or arrays changed, as a hand edit would."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"][()]))
        arrays = {k: np.array(f[k]) for k in f.files if k != "meta"}
    if change_meta:
        change_meta(meta)
    if change_arrays:
        change_arrays(arrays)
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def nan_weight(arrays):
    arrays["param/dec.0.W"][0, 0] = np.nan


def drop_decoder_layer(arrays):
    for group in ("param", "adam.m", "adam.v"):
        del arrays[f"{group}/dec.1.W"]


CORRUPT = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:300]),
    "not a zip": lambda p: p.write_text("hello"),
    "empty": lambda p: p.write_bytes(b""),
    "NaN weights": lambda p: rewrite_checkpoint(p, change_arrays=nan_weight),
    "an epoch count that lies": lambda p: rewrite_checkpoint(p, change_meta=lambda m: m.update(epoch=7)),
    "a missing decoder layer": lambda p: rewrite_checkpoint(p, change_arrays=drop_decoder_layer),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_a_corrupt_checkpoint_says_how_to_train_it_again(copy_run, capsys, fake_mnist, name):
    run = copy_run("vae")
    CORRUPT[name](run / CHECKPOINT_FILE)
    message = refusal(capsys, run)
    assert message.startswith(f"checkpoint {run / CHECKPOINT_FILE} ")
    assert message.endswith(f"train the run again with python demos/mnist.py --latent-dim 2 --out {run} "
                            "--overwrite, or pass another run folder")
    assert_names_only_what_the_explorer_accepts(message)
    assert "resum" not in message                 # the explorer resumes nothing
    assert fake_mnist == []


@pytest.mark.parametrize("kind, words", [("ae", "an autoencoder (ae) run"),
                                         ("m2", "an M2 semi-supervised (m2) run")])
def test_an_ae_or_m2_run_is_named_by_its_kind(runs, capsys, fake_mnist, kind, words):
    message = refusal(capsys, runs[kind])
    assert message.startswith(f"{runs[kind]} holds {words}; {DRAWS}")
    assert "VAEConfig" not in message and "unknown" not in message
    assert_names_only_what_the_explorer_accepts(message)
    assert fake_mnist == []


@pytest.mark.parametrize("kind, words", [("ae", "an autoencoder (ae) run"),
                                         ("m2", "an M2 semi-supervised (m2) run")])
def test_an_ae_or_m2_record_without_its_model_name_is_named_by_its_config(runs, tmp_path, capsys, kind, words):
    run = Path(shutil.copytree(runs[kind], tmp_path / "run"))
    rewrite_checkpoint(run / CHECKPOINT_FILE, change_meta=lambda m: m.pop("model"))
    message = refusal(capsys, run)
    assert message.startswith(f"{run} holds {words}; {DRAWS}") and "VAEConfig" not in message


def test_a_run_of_an_unknown_kind_is_named_too(copy_run, capsys):
    run = copy_run("vae")
    rewrite_checkpoint(run / CHECKPOINT_FILE, change_meta=lambda m: m.update(model="flow"))
    assert refusal(capsys, run).startswith(f"{run} holds a 'flow' run; {DRAWS}")


def test_a_vae_record_with_unknown_config_fields_says_so_in_one_line(copy_run, capsys):
    run = copy_run("vae")
    rewrite_checkpoint(run / CHECKPOINT_FILE, change_meta=lambda m: m["config"].update(flow_steps=4))
    message = refusal(capsys, run)
    assert message.startswith(f"{run} holds a VAE config the explorer cannot read (") and DRAWS in message


def test_a_latent_of_another_size_says_which(runs, capsys, fake_mnist):
    message = refusal(capsys, runs["vae_latent3"])
    assert message.startswith(f"{runs['vae_latent3']} holds a model with latent_dim=3; {DRAWS}")
    assert message.endswith("train one with python demos/mnist.py --latent-dim 2 --out DIR")
    assert fake_mnist == []


@pytest.mark.parametrize("args, says", [
    ([], "the following arguments are required: RUN_DIR"),
    (["run", "--resume"], "unrecognized arguments: --resume"),
    (["run", "--ou", "x.html"], "unrecognized arguments: --ou x.html"),   # no abbreviated flags
])
def test_a_bad_argument_is_one_line(capsys, args, says):
    with pytest.raises(SystemExit) as e:
        explorer.main(args)
    _, err = capsys.readouterr()
    assert e.value.code == 2 and one_line(err) == f"error: {says} (see --help)"


def test_out_that_is_a_folder_is_one_line(runs, capsys, tmp_path):
    message = refusal(capsys, runs["vae"], "--out", tmp_path)
    assert message == f"{tmp_path} is a folder: pass a file name for the page, e.g. --out {tmp_path / 'explorer.html'}"


# ---------------------------------------------------------------------------
# 3. The caption is the checkpoint's own record, whatever metrics.json says
# ---------------------------------------------------------------------------


def checkpoint_epochs(run: Path) -> list:
    return load_checkpoint(run / CHECKPOINT_FILE, get_backend("numpy"))[2]["epochs"]


def stale(metrics):            # an earlier run's file: fewer epochs, a worse -ELBO (the "2 epochs, 202.13")
    metrics["epochs"] = [dict(e, test_neg_elbo=202.13 + 3 - e["epoch"]) for e in metrics["epochs"][:2]]
    metrics["test_neg_elbo"] = 202.13


def another_runs(metrics):     # as many epochs, other numbers
    metrics["epochs"] = [dict(e, test_neg_elbo=e["test_neg_elbo"] + 50) for e in metrics["epochs"]]


@pytest.mark.parametrize("edit", [stale, another_runs, None], ids=["stale", "another run's", "missing"])
def test_the_caption_is_the_checkpoints_own_record(copy_run, capsys, edit):
    run = copy_run("vae")
    epochs = checkpoint_epochs(run)
    if edit is None:
        (run / METRICS_FILE).unlink()
    else:
        metrics = json.loads((run / METRICS_FILE).read_text())
        edit(metrics)
        (run / METRICS_FILE).write_text(json.dumps(metrics))
    rc, out, err = explore(capsys, run)
    assert rc == 0 and f"wrote {run / explorer.EXPLORER_FILE}" in out
    caption = page_record(run / explorer.EXPLORER_FILE)["caption"]
    assert caption == f"MNIST, 3 epochs, test -ELBO {epochs[-1]['test_neg_elbo']:.2f} nats per image"
    assert caption == explorer.run_caption(epochs) and "202.13" not in caption
    if edit is None:
        assert err == ""
    else:                       # the disagreement is said, in one line, and is not an error
        note = one_line(err)
        assert note.startswith(f"note: {run / METRICS_FILE} records ") and str(run / CHECKPOINT_FILE) in note


def test_a_metrics_json_that_agrees_says_nothing(copy_run, capsys):
    run = copy_run("vae")
    rc, _, err = explore(capsys, run)
    assert rc == 0 and err == ""
