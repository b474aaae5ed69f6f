"""The autoencoder-family demos: demos/mnist_ae.py (AE, DAE, VAE side by side), demos/mnist_cvae.py
(the conditional VAE and its digit grid) and demos/mnist_beta.py (beta sweep, KL warm-up, active
units). Smoke runs on a small fake MNIST, seconds each; the numbers they write are checked against
their definitions. One test trains a small CVAE on real MNIST and reads its digit grid back with a
nearest-class-mean classifier."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyvae.core import ae
from tinyvae.backend import get_backend
from tinyvae.checkpoint import load_checkpoint
from tinyvae.data import MNIST, load_mnist, to_unit_interval
from tinyvae.metrics import active_units
from tinyvae.models import corrupt

from conftest import load_script, one_line

ROOT = Path(__file__).resolve().parents[1]


family, cvae_demo, beta_demo = (load_script(ROOT / "demos" / f"{name}.py")
                                for name in ("mnist_ae", "mnist_cvae", "mnist_beta"))
common = sys.modules["common"]


def blocky_digits(n, seed):
    """n fake digits: class c is a 6x6 block of ink at its own place on a 28x28 page, on faint noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.uniform(0, 20, (n, 28, 28))
    for i, c in enumerate(labels):
        r, col = 2 + 8 * (c // 4), 2 + 6 * (c % 4)
        images[i, r:r + 6, col:col + 6] = rng.uniform(150, 255, (6, 6))
    return images.reshape(n, 784).astype(np.uint8), labels


@pytest.fixture
def fake_mnist(monkeypatch):
    """The demos read 300 + 100 fake digits instead of MNIST."""
    (x_train, y_train), (x_test, y_test) = blocky_digits(300, 0), blocky_digits(100, 1)
    d = MNIST(x_train, y_train, x_test, y_test)
    monkeypatch.setattr(common, "load_mnist", lambda data_dir=None, **kw: d)
    return d


SMALL = ["--hidden", "16", "--epochs", "2", "--batch-size", "50", "--lr", "3e-3"]


def metrics_of(out):
    return json.loads((out / "metrics.json").read_text())


# ---- demos/mnist_ae.py ---------------------------------------------------------------


def test_family_demo_writes_the_table_pictures_and_three_models(tmp_path, fake_mnist, capsys):
    assert family.main([*SMALL, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| AE: -log p(x \\| dec(enc(x_in))) |" in out and "masking, p = 0.3" in out
    m = metrics_of(tmp_path)
    for name in ("ae", "dae", "vae"):
        assert (tmp_path / name / "checkpoint.npz").is_file()
    for picture in family.PICTURES:
        assert (tmp_path / picture).stat().st_size > 0, picture
    # one shape, one training for all three
    shapes = {(tuple(c["enc_hidden"]), tuple(c["dec_hidden"]), c["latent_dim"]) for c in m["configs"].values()}
    assert shapes == {((16,), (16,), 2)} and m["train_config"]["epochs"] == 2
    assert m["configs"]["dae"]["corruption"] == "mask" and m["configs"]["dae"]["corruption_level"] == 0.3
    assert m["configs"]["ae"]["corruption"] == "none"
    t = m["table"]
    assert set(t) == {"ae", "dae", "vae_recon", "vae_recon_at_mean", "vae_neg_elbo"}
    assert all(math.isfinite(v) and v > 0 for row in t.values() for v in row.values())
    # the deterministic AE's clean row is fit's own test number; the -ELBO adds a KL >= 0
    assert t["ae"]["clean"] == pytest.approx(m["final"]["ae"]["test_recon"], rel=1e-5)
    assert t["dae"]["clean"] == pytest.approx(m["final"]["dae"]["test_recon"], rel=1e-5)
    for column in ("clean", "corrupted"):
        assert t["vae_neg_elbo"][column] > t["vae_recon"][column]
    assert set(m["code_spread"]) == {"ae", "dae", "vae"}
    assert all(0 <= sp["inside_prior_95"] <= 1 and len(sp["std"]) == 2 for sp in m["code_spread"].values())


def test_code_spread_of_prior_draws_is_the_prior():
    z = np.random.default_rng(1).standard_normal((50_000, 2))
    sp = family.code_spread(3.0 * z)
    assert sp["std"] == pytest.approx([3.0, 3.0], rel=0.02) and sp["inside_prior_95"] < 0.3
    sp = family.code_spread(z)
    assert sp["inside_prior_95"] == pytest.approx(0.95, abs=0.005) and sp["mean"] == pytest.approx([0, 0], abs=0.02)
    assert family.code_spread(np.zeros((10, 5)))["inside_prior_95"] is None


def test_corrupted_column_is_scored_against_the_clean_digits(tmp_path, fake_mnist, capsys):
    """Recomputed from the saved DAE: its input is the fixed corrupted copy, its target the clean x
    (scoring against the corrupted copy, or corrupting afresh, gives other numbers)."""
    assert family.main([*SMALL, "--out", str(tmp_path)]) == 0
    m = metrics_of(tmp_path)
    be = get_backend("numpy", seed=0)
    params, _, meta = load_checkpoint(tmp_path / "dae" / "checkpoint.npz", be)
    config = ae.AEConfig.from_dict(meta["config"])
    x = be.asarray(to_unit_interval(fake_mnist.x_test))
    be.reseed(family.STREAM_TEST_CORRUPTION)
    x_noisy = corrupt(x, be, config)
    assert float(np.mean(x_noisy == 0)) > float(np.mean(x == 0)) + 0.2        # about 30% more zeros
    want = float(np.mean(ae.recon_terms(params, x_noisy, x, config)))
    assert m["table"]["dae"]["corrupted"] == pytest.approx(want, rel=1e-5)
    wrong = float(np.mean(ae.recon_terms(params, x_noisy, x_noisy, config)))
    assert abs(wrong - want) > 1.0


def test_family_demo_gaussian_corruption_takes_its_teaching_level(tmp_path, fake_mnist, capsys):
    assert family.main([*SMALL, "--epochs", "1", "--corruption", "gaussian", "--out", str(tmp_path)]) == 0
    dae = metrics_of(tmp_path)["configs"]["dae"]
    assert (dae["corruption"], dae["corruption_level"]) == ("gaussian", 0.5)
    assert "Gaussian, sigma = 0.5" in capsys.readouterr().out


def test_family_demo_refuses_a_mask_level_of_1_in_one_line(tmp_path, fake_mnist, capsys):
    """The rule spans two flags (AEConfig's check); its message names the flag, not the field."""
    assert family.main([*SMALL, "--corruption-level", "1", "--out", str(tmp_path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: --corruption-level must be in [0, 1) for masking") and "corruption_level" not in line
    assert not (tmp_path / "ae").exists()                          # refused before training


def test_family_demo_second_run_needs_overwrite_and_resume_redraws(tmp_path, fake_mnist, capsys):
    args = [*SMALL, "--epochs", "1", "--out", str(tmp_path)]
    assert family.main(args) == 0
    before = metrics_of(tmp_path)["table"]
    capsys.readouterr()
    assert family.main(args) == 2
    assert "--overwrite" in one_line(capsys.readouterr().err)
    assert family.main([*args, "--resume"]) == 0                   # nothing to train: the table again
    assert metrics_of(tmp_path)["table"] == before


# ---- demos/mnist_cvae.py -------------------------------------------------------------


def test_cvae_demo_trains_both_models_and_checks_its_grid(tmp_path, fake_mnist, capsys):
    assert cvae_demo.main([*SMALL, "--iw-k", "3", "--iw-images", "20", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "-log p(x | y) ~=" in out and "digit grid: rows read as" in out
    m = metrics_of(tmp_path)
    assert m["configs"]["cvae"]["n_classes"] == 10 and m["configs"]["vae"]["n_classes"] == 0
    assert m["configs"]["cvae"]["enc_hidden"] == m["configs"]["vae"]["enc_hidden"] == [16]
    for name in ("cvae", "vae"):
        f = m["final"][name]
        assert f["test_neg_elbo"] == pytest.approx(f["test_recon"] + f["test_kl"], rel=1e-6)
        assert math.isfinite(f["test_iw_nll"]) and f["iw_k"] == 3
    g = m["digit_grid"]
    assert len(g["read_as"]) == 10 and 0 <= g["right"] <= 10 and g["cells"] == 100
    assert g["test_digits_right"] > 0.9                 # the blocks of the fake digits are easy to read
    for picture in cvae_demo.PICTURES:
        assert (tmp_path / picture).stat().st_size > 0, picture


def test_cvae_demo_no_compare_trains_the_cvae_alone(tmp_path, fake_mnist, capsys):
    assert cvae_demo.main([*SMALL, "--epochs", "1", "--iw-k", "0", "--no-compare", "--out", str(tmp_path)]) == 0
    m = metrics_of(tmp_path)
    assert set(m["final"]) == {"cvae"} and not (tmp_path / "vae").exists()


def test_digit_grid_keeps_z_along_each_column():
    """Row d decodes the same z values with label d: with a decoder that ignores the label
    every row is the same; with one that reads only the label, every column is."""
    from tinyvae.core.vae import VAEConfig, init_params
    be = get_backend("numpy", seed=0)
    config = VAEConfig(input_dim=784, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2, n_classes=10)
    params = init_params(config, be)
    label_blind = dict(params, **{"dec.0.W": params["dec.0.W"] * np.r_[np.ones(2), np.zeros(10)][:, None]})
    grid = cvae_demo.digit_grid(label_blind, config, be)                      # (10, C, 784)
    assert grid.shape == (10, cvae_demo.N_COLUMNS, 784)
    assert np.allclose(grid, grid[:1]) and not np.allclose(grid, grid[:, :1])
    z_blind = dict(params, **{"dec.0.W": params["dec.0.W"] * np.r_[np.zeros(2), np.ones(10)][:, None]})
    grid = cvae_demo.digit_grid(z_blind, config, be)
    assert np.allclose(grid, grid[:, :1]) and not np.allclose(grid, grid[:1])


def test_read_grid_counts_rows_by_majority():
    means = np.eye(10, 784)
    grid = np.repeat(np.eye(10, 784)[:, None, :], 4, axis=1)                 # row d: 4 copies of mean d
    grid[3, :3] = means[5]                                                   # row 3 mostly reads as 5
    grid[7, :1] = means[1]                                                   # row 7 keeps its majority
    g = cvae_demo.read_grid(grid, means)
    assert g["read_as"] == [0, 1, 2, 5, 4, 5, 6, 7, 8, 9] and g["right"] == 9
    assert (g["cells_right"], g["cells"]) == (36, 40)


def test_nearest_class_compares_shapes_not_ink():
    """A faint copy of the bold class-0 mean is nearer the sparse class-1 mean by plain distance,
    but it is the 0 by angle, which is what the grid check uses."""
    means = np.zeros((10, 784))
    means[0, :100] = 1.0                                                     # bold: 100 pixels
    means[1, 700:710] = 1.0                                                  # sparse: 10 pixels
    means[2:, 710:720] = np.arange(2, 10)[:, None]                         # the rest: far off
    faint_zero = 0.1 * means[:1]
    assert np.argmin(((faint_zero - means) ** 2).sum(axis=1)) == 1          # plain distance: wrong
    assert cvae_demo.nearest_class(faint_zero, means).tolist() == [0]


def _real_mnist():
    try:
        return load_mnist()
    except Exception as e:                                  # noqa: BLE001  (no cache, no network)
        pytest.skip(f"MNIST not available: {e}")


def test_cvae_digit_grid_reads_as_its_digits_on_real_mnist(tmp_path, capsys):
    """The target: every row of the digit grid readable as its digit, at least 9 of 10 rows right
    by a nearest-class-mean classifier (the mean training image of each digit; images and means
    scaled to length 1) on the decoded means. The CVAE of the demo, 3 epochs on 10,000 images."""
    d = _real_mnist()
    out = tmp_path / "cvae"
    argv = ["--limit", "10000", "--epochs", "3", "--no-compare", "--iw-k", "0",
            "--out", str(out)]
    assert cvae_demo.main(argv) == 0
    be = get_backend("numpy", seed=0)
    params, _, meta = load_checkpoint(out / "cvae" / "checkpoint.npz", be)
    from tinyvae.core.vae import VAEConfig
    grid = cvae_demo.digit_grid(params, VAEConfig.from_dict(meta["config"]), be)   # (10, 10, 784)
    x, y = to_unit_interval(d.x_train[:10000]).astype(np.float64), np.asarray(d.y_train[:10000])
    means = np.stack([x[y == k].mean(axis=0) for k in range(10)])                   # (10, 784)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    rows_right = 0
    for digit, row in enumerate(grid):
        row = row / np.linalg.norm(row, axis=1, keepdims=True)
        nearest = np.argmin(((row[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
        rows_right += int(np.bincount(nearest, minlength=10).argmax() == digit)
    assert rows_right >= 9, f"only {rows_right} of 10 rows read as their digit"
    assert metrics_of(out)["digit_grid"]["right"] == rows_right        # the demo reports the same


# ---- demos/mnist_beta.py -------------------------------------------------------------


def test_beta_demo_sweeps_warms_up_and_counts_active_units(tmp_path, fake_mnist, capsys):
    assert beta_demo.main([*SMALL, "--latent-dim", "4", "--warmup-epochs", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| beta 1, warm-up 2 epochs |" in out
    m = metrics_of(tmp_path)
    assert list(m["table"]) == ["beta_0.5", "beta_1", "beta_4", "beta_1_warmup2"]
    for name, row in m["table"].items():
        assert row["objective"] == pytest.approx(row["recon"] + row["beta"] * row["kl"], rel=1e-6)
        assert row["neg_elbo"] == pytest.approx(row["recon"] + row["kl"], rel=1e-6)
        assert row["active_units"] == sum(a > 0.01 for a in m["unit_activity"][name])
        assert 0 <= row["active_units"] <= 4
    warm = json.loads((tmp_path / "beta_1_warmup2" / "metrics.json").read_text())["epochs"]
    assert [e["beta"] for e in warm] == pytest.approx([0.5, 1.0])
    for picture in beta_demo.PICTURES:
        assert (tmp_path / picture).stat().st_size > 0, picture


def test_beta_demo_active_units_are_those_of_the_saved_encoder(tmp_path, fake_mnist, capsys):
    assert beta_demo.main([*SMALL, "--epochs", "1", "--betas", "4", "--warmup-epochs", "0", "--latent-dim", "3",
                           "--out", str(tmp_path)]) == 0
    m = metrics_of(tmp_path)
    assert list(m["table"]) == ["beta_4"]                              # no warm-up: no beta 1 added
    be = get_backend("numpy", seed=0)
    params, _, meta = load_checkpoint(tmp_path / "beta_4" / "checkpoint.npz", be)
    from tinyvae.core.vae import VAEConfig, encode
    mu = encode(params, be.asarray(to_unit_interval(fake_mnist.x_test)), VAEConfig.from_dict(meta["config"]))[0]
    assert m["table"]["beta_4"]["active_units"] == active_units(mu)
    assert m["unit_activity"]["beta_4"] == pytest.approx(np.var(np.asarray(mu, np.float64), axis=0), rel=1e-6)


def test_beta_demo_refuses_a_zero_beta_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        beta_demo.main(["--betas", "0"])
    assert e.value.code == 2 and "positive number" in one_line(capsys.readouterr().err)


def test_family_demo_sparsity_trains_a_plain_and_a_sparse_autoencoder(tmp_path, fake_mnist, capsys):
    assert family.main(["--sparsity", "kl", "--code-units", "16", "--epochs", "2", "--batch-size", "50",
                        "--lr", "3e-3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    m = metrics_of(tmp_path)
    assert (tmp_path / "features.png").stat().st_size > 0
    assert all((tmp_path / name / "checkpoint.npz").is_file() for name in ("plain", "sparse"))
    assert m["configs"]["plain"]["sparsity_weight"] == 0 and m["configs"]["plain"]["weight_decay"] == 0
    assert m["configs"]["sparse"]["sparsity"] == "kl" and m["configs"]["sparse"]["latent_dim"] == 16
    for name in ("plain", "sparse"):
        codes = m["codes"][name]
        assert 0 <= codes["near_zero_share"] <= 1 and codes["units"] == 16
        assert f"{codes['near_zero_share']:.1%} of the test codes' activations below 0.05" in out


def test_family_demo_sparsity_flags_are_checked_by_the_config_rules(capsys):
    with pytest.raises(SystemExit) as e:
        family.main(["--sparsity", "kl", "--rho", "1"])
    assert e.value.code == 2 and "--rho: must be a finite number in (0, 1)" in one_line(capsys.readouterr().err)
