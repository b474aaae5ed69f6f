"""Tests for tinyvae.plots: each picture is a real PNG of a sensible size, written atomically."""
import os
import subprocess
import sys
import warnings
from statistics import NormalDist

import numpy as np
import pytest
from matplotlib.image import imread

from tinyvae import plots
from tinyvae.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def digits(n, seed=0):
    """n synthetic flat 'digits' in [0, 1], shape (n, 784)."""
    return np.random.default_rng(seed).uniform(0, 1, (n, 784))


def png_size(path):
    """Check `path` is a PNG file and return its (width, height) in pixels."""
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    height, width = imread(path).shape[:2]
    return width, height


def only_file(directory):
    """The single file in `directory`: no temporary file may be left beside it."""
    names = os.listdir(directory)
    assert len(names) == 1, names
    return directory / names[0]


# tile_images ---------------------------------------------------------------

def test_tile_images_puts_image_k_in_its_block():
    nrows, ncols, side = 2, 3, 4
    images = np.arange(5)[:, None] * np.ones((1, side * side))  # image k is all k
    images[1, 0] = 10.0                                         # mark a corner of image 1
    grid = plots.tile_images(images, nrows, ncols, side=side)
    assert grid.shape == (nrows * side, ncols * side)
    for k in range(5):
        r, c = divmod(k, ncols)
        block = grid[r * side:(r + 1) * side, c * side:(c + 1) * side]
        np.testing.assert_array_equal(block, images[k].reshape(side, side))
    np.testing.assert_array_equal(grid[side:, 2 * side:], 0.0)  # the sixth cell is empty
    assert grid[0, side] == 10.0                                # top-left pixel of image 1


def test_tile_images_rejects_too_many_images():
    with pytest.raises(InputError):
        plots.tile_images(digits(7), 2, 3)


# principal_components -----------------------------------------------------

def test_principal_components_finds_the_line_the_data_lies_on():
    rng = np.random.default_rng(1)
    t = rng.normal(size=500)
    direction = np.array([1.0, -2.0, 0.5, 3.0, 0.0])
    z = 4.0 + t[:, None] * direction + 1e-6 * rng.normal(size=(500, 5))  # (500, 5) on a line
    pcs = plots.principal_components(z, k=2)
    assert pcs.shape == (500, 2)
    # PC 1 is t up to sign and the length of `direction`; PC 2 is only the noise.
    np.testing.assert_allclose(np.abs(pcs[:, 0]), np.abs(t - t.mean()) * np.linalg.norm(direction),
                               rtol=1e-4, atol=1e-4)
    assert pcs[:, 1].std() < 1e-5


def test_principal_components_are_centred_and_ordered_by_variance():
    z = np.random.default_rng(2).normal(size=(400, 4)) * np.array([0.5, 3.0, 1.0, 0.1])
    pcs = plots.principal_components(z, k=3)
    np.testing.assert_allclose(pcs.mean(axis=0), 0.0, atol=1e-12)
    variances = pcs.var(axis=0)
    assert variances[0] > variances[1] > variances[2]


# the pictures --------------------------------------------------------------

def test_reconstructions(tmp_path):
    path = tmp_path / "recon.png"
    assert plots.reconstructions(digits(12), digits(12, seed=1), path, n=10) == path
    width, height = png_size(only_file(tmp_path))
    assert width >= 10 * 28 and width > 2.5 * height  # one wide strip of two rows


def test_reconstructions_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(InputError):
        plots.reconstructions(digits(5), digits(4), tmp_path / "r.png")


def test_samples_grid(tmp_path):
    path = plots.samples(digits(20), tmp_path / "samples.png", ncols=8)  # 3 rows, last part empty
    width, height = png_size(path)
    assert width >= 8 * 28 and height >= 3 * 28
    assert width > height


def test_samples_rejects_no_images(tmp_path):
    with pytest.raises(InputError):
        plots.samples(np.zeros((0, 784)), tmp_path / "samples.png")


@pytest.mark.parametrize("n_epochs", [1, 5])
def test_loss_curves(tmp_path, n_epochs):
    history = [{"train_neg_elbo": 200.0 - 10 * k, "test_neg_elbo": 205.0 - 9 * k,
                "test_recon": 180.0 - 10 * k, "test_kl": 25.0 + k} for k in range(n_epochs)]
    path = plots.loss_curves(history, tmp_path / "loss.png")
    assert png_size(path) == (10 * plots.DPI, 4 * plots.DPI)


def test_loss_curves_rejects_empty_history(tmp_path):
    with pytest.raises(InputError):
        plots.loss_curves([], tmp_path / "loss.png")


@pytest.mark.parametrize("n", [3, 15])
def test_manifold_decodes_the_inverse_cdf_grid(tmp_path, n):
    seen = []

    def decode(z):
        seen.append(z.copy())
        return np.full((len(z), 784), 0.5)

    path = plots.manifold(decode, n, tmp_path / "manifold.png")
    (z,) = seen  # decoded in one call
    assert z.shape == (n * n, 2)
    zs = np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)])
    np.testing.assert_allclose(np.unique(z[:, 0]), zs)
    np.testing.assert_allclose(zs, -zs[::-1], atol=1e-12)  # symmetric about 0
    # Row by row: z1 increases along the top row, z2 is largest there and falls row by row.
    rows = z.reshape(n, n, 2)
    assert np.all(np.diff(rows[0, :, 0]) > 0)
    np.testing.assert_allclose(rows[0, :, 1], zs[-1])
    assert np.all(np.diff(rows[:, 0, 1]) < 0)
    width, height = png_size(path)
    assert width >= 28 * n and height >= 28 * n  # every decoded pixel is at least one PNG pixel


@pytest.mark.parametrize("latent", [1, 2, 5])
def test_latent_scatter(tmp_path, latent):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 300)
    z_mean = rng.normal(size=(300, latent)) + labels[:, None]
    path = plots.latent_scatter(z_mean, labels, tmp_path / "latent.png")
    assert png_size(path) == (640, 520)


def test_latent_scatter_rejects_mismatched_labels(tmp_path):
    with pytest.raises(InputError):
        plots.latent_scatter(np.zeros((10, 2)), np.zeros(9, dtype=int), tmp_path / "l.png")


# atomic writes and global state -------------------------------------------

def refuse_replace(src, dst):
    """Stands in for os.replace: the last step of the save fails."""
    raise OSError("disk full")


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "samples.png"
    monkeypatch.setattr(os, "replace", refuse_replace)
    with pytest.raises(OSError, match="disk full"):
        plots.samples(digits(4), path)
    assert os.listdir(tmp_path) == []  # neither the PNG nor its temporary file


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "samples.png"
    path.write_bytes(b"old picture")
    monkeypatch.setattr(os, "replace", refuse_replace)
    with pytest.raises(OSError, match="disk full"):
        plots.samples(digits(4), path)
    assert path.read_bytes() == b"old picture"
    assert os.listdir(tmp_path) == ["samples.png"]


def test_plots_never_import_pyplot():
    code = ("import sys, numpy as np, tempfile, os\n"
            "from tinyvae import plots\n"
            "d = tempfile.mkdtemp()\n"
            "plots.samples(np.zeros((4, 784)), os.path.join(d, 's.png'))\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo)


# anomaly pictures -------------------------------------------------------------

def anomaly_scores(n=400, seed=4):
    """Two scores for n images, the anomalies (one in ten) shifted up."""
    rng = np.random.default_rng(seed)
    is_anomaly = np.arange(n) % 10 == 0
    base = rng.normal(size=n) + 2.0 * is_anomaly
    return {"-ELBO": 100 + 10 * base, "-log p(x)": np.exp(base)}, is_anomaly


def test_score_histograms_one_panel_per_score(tmp_path):
    scores, is_anomaly = anomaly_scores()
    scores["constant"] = np.ones(len(is_anomaly))        # all equal: still drawn
    path = plots.score_histograms(scores, is_anomaly, tmp_path / "hist.png", title="held out: 0")
    assert png_size(only_file(tmp_path)) == (round(3 * 4.2 * plots.DPI), round(3.6 * plots.DPI))
    assert path == tmp_path / "hist.png"
    for k in range(4):                                    # 7 scores: two rows of at most four panels
        scores[f"more {k}"] = scores["-ELBO"] + k
    plots.score_histograms(scores, is_anomaly, tmp_path / "hist.png")
    assert png_size(tmp_path / "hist.png") == (round(4 * 4.2 * plots.DPI), round(2 * 3.6 * plots.DPI))


def test_score_histograms_reject_mismatched_labels(tmp_path):
    scores, is_anomaly = anomaly_scores()
    with pytest.raises(InputError, match="one label per image"):
        plots.score_histograms(scores, is_anomaly[:-1], tmp_path / "hist.png")
    with pytest.raises(InputError):
        plots.score_histograms({}, is_anomaly, tmp_path / "hist.png")


def test_roc_curves(tmp_path):
    from tinyvae.metrics import roc_curve
    scores, is_anomaly = anomaly_scores()
    curves = {f"{k} (AUROC ?)": roc_curve(v, is_anomaly) for k, v in scores.items()}
    path = plots.roc_curves(curves, tmp_path / "roc.png")
    assert png_size(path) == (560, 520)
    with pytest.raises(InputError, match="one length"):
        plots.roc_curves({"bad": ([0.0, 1.0], [0.0, 0.5, 1.0])}, tmp_path / "bad.png")


def test_image_rows_pads_short_rows(tmp_path):
    rows = [("highest normal", digits(10)), ("lowest anomalies", digits(3, seed=1))]
    path = plots.image_rows(rows, tmp_path / "rows.png", "held out: 1")
    width, height = png_size(path)
    assert width >= 10 * 28 and height >= 2 * 28 and width > 2.5 * height   # 2 rows of 10
    with pytest.raises(InputError):
        plots.image_rows([], tmp_path / "none.png", "nothing")


def test_a_long_title_over_a_narrow_grid_is_wrapped_inside_the_figure():
    """Sixteen rows of ten digits (the anomaly demo's extremes.png): the title wraps, no line is cut off."""
    title = "held-out 1: normal digits scored most anomalous, and the 1s scored least"
    fig, ax = plots._grid_figure(np.zeros((16 * 28, 10 * 28)), title, left=plots.ROW_LABEL_INCHES)
    assert "\n" in ax.get_title() and ax.get_title().replace("\n", " ") == title
    renderer = fig.canvas.get_renderer()
    box = ax.title.get_window_extent(renderer)
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    short, _ = plots._grid_figure(np.zeros((28, 280)), "short")
    assert short.axes[0].get_title() == "short"


def test_score_vs_ink(tmp_path):
    scores, is_anomaly = anomaly_scores()
    ink = np.random.default_rng(5).integers(50, 250, len(is_anomaly))
    path = plots.score_vs_ink(ink, scores["-ELBO"], is_anomaly, tmp_path / "ink.png", "-ELBO")
    assert png_size(path) == (600, 480)
    with pytest.raises(InputError, match="do not match"):
        plots.score_vs_ink(ink[:5], scores["-ELBO"], is_anomaly, tmp_path / "bad.png", "-ELBO")


# the autoencoder family ------------------------------------------------------


@pytest.mark.parametrize("latent", [2, 5])
def test_latent_scatters_one_panel_per_model(tmp_path, latent):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 10, 300)
    panels = {"AE": 20 * rng.normal(size=(300, latent)), "VAE": rng.normal(size=(300, latent))}
    path = plots.latent_scatters(panels, labels, tmp_path / "scatters.png", title="same digits")
    assert png_size(only_file(tmp_path)) == (round((2 * 4.6 + 0.8) * plots.DPI), round(4.8 * plots.DPI))
    assert path == tmp_path / "scatters.png"
    with pytest.raises(InputError, match="'VAE'"):
        plots.latent_scatters({"VAE": np.zeros((10, 2))}, labels, tmp_path / "bad.png")
    with pytest.raises(InputError):
        plots.latent_scatters({}, labels, tmp_path / "bad.png")


def test_prior_circle_holds_95_percent_of_the_2d_normal():
    z = np.random.default_rng(0).standard_normal((200_000, 2))
    assert np.mean(np.hypot(z[:, 0], z[:, 1]) < plots.PRIOR_95_RADIUS) == pytest.approx(0.95, abs=0.002)


def test_beta_tradeoff(tmp_path):
    points = [("beta 0.5", 40.0, 70.0), ("beta 1", 26.0, 80.0), ("beta 4", 9.0, 110.0)]
    path = plots.beta_tradeoff(points, tmp_path / "tradeoff.png")
    assert png_size(path) == (640, 500)
    with pytest.raises(InputError):
        plots.beta_tradeoff([], tmp_path / "none.png")


@pytest.mark.parametrize("n_epochs", [1, 4])
def test_kl_curves(tmp_path, n_epochs):
    def epochs(ramp):
        return [{"beta": min(1.0, (k + 1) / ramp), "test_kl": 20.0 + k, "test_neg_elbo": 120.0 - k}
                for k in range(n_epochs)]
    path = plots.kl_curves({"no warm-up": epochs(1), "warm-up 2 epochs": epochs(2)}, tmp_path / "kl.png")
    assert png_size(path) == (1300, 400)
    with pytest.raises(InputError):
        plots.kl_curves({"empty": []}, tmp_path / "none.png")


def test_unit_activities_draws_collapsed_units_too(tmp_path):
    activity = {"beta 1": np.r_[np.full(12, 0.8), np.full(8, 1e-4)], "beta 4": np.r_[np.full(5, 0.9), np.zeros(15)]}
    path = plots.unit_activities(activity, tmp_path / "units.png")
    assert png_size(path) == (640, 460)
    with pytest.raises(InputError):
        plots.unit_activities({}, tmp_path / "none.png")


def test_confusion_matrix(tmp_path):
    counts = np.array([[50, 2, 0], [1, 40, 9], [0, 0, 3]])
    path = plots.confusion_matrix(counts, tmp_path / "confusion.png")
    assert path == tmp_path / "confusion.png"
    assert png_size(only_file(tmp_path)) == (640, 560)
    plots.confusion_matrix(np.zeros((2, 2), dtype=np.int64), tmp_path / "empty.png")  # no images: no crash
    for bad in (np.ones((2, 3), dtype=int), np.array([[1, -1], [0, 1]]), np.ones((2, 2)) / 2, np.zeros((0, 0), int)):
        with pytest.raises(InputError, match="counts"):
            plots.confusion_matrix(bad, tmp_path / "bad.png")


@pytest.mark.parametrize("n_epochs", [1, 5])
def test_m2_curves(tmp_path, n_epochs):
    epochs = [{"test_error": 0.5 / (k + 1), "test_neg_elbo": 130.0 - k} for k in range(n_epochs)]
    path = plots.m2_curves(epochs, tmp_path / "curves.png", reference=(11.97, "paper"))
    assert png_size(only_file(tmp_path)) == (1000, 400)
    plots.m2_curves(epochs, tmp_path / "plain.png")
    assert path == tmp_path / "curves.png"
    with pytest.raises(InputError):
        plots.m2_curves([], tmp_path / "none.png")


# one or two images, a latent of one unit; none: one line ---------------------


@pytest.fixture
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("n", [1, 2])
def test_every_picture_of_images_draws_one_or_two(tmp_path, warnings_are_errors, n):
    x = digits(n)
    is_anomaly = np.arange(n) % 2 == 1                 # n = 1: no anomaly at all
    written = [
        plots.reconstructions(x, digits(n, seed=1), tmp_path / "recon.png"),
        plots.samples(x, tmp_path / "samples.png"),
        plots.image_rows([("only", x), ("none", x[:0])], tmp_path / "rows.png", "title"),
        plots.manifold(lambda z: np.full((len(z), 784), 0.5), n, tmp_path / "manifold.png"),
        plots.score_histograms({"s": np.arange(n, dtype=float)}, is_anomaly, tmp_path / "hist.png"),
        plots.score_histograms({"s": np.ones(n)}, np.zeros(n, bool), tmp_path / "hist_normal.png"),
        plots.score_vs_ink(np.arange(n), np.arange(n), is_anomaly, tmp_path / "ink.png", "s"),
        plots.unit_activities({"one unit": np.ones(1)}, tmp_path / "units.png"),
    ]
    for path in written:
        assert png_size(path)[0] > 0
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in written)   # no temporary file left


@pytest.mark.parametrize("n, latent, spread", [
    (1, 1, "distinct"), (1, 2, "distinct"), (1, 20, "distinct"),
    (2, 1, "distinct"), (2, 2, "identical"), (2, 3, "distinct"), (2, 20, "identical")])
def test_latent_scatters_of_one_or_two_points(tmp_path, warnings_are_errors, n, latent, spread):
    """demos/mnist.py --limit 1 scatters one test digit's 20-D code: PCA of one point has one component."""
    z = np.random.default_rng(6).normal(size=(n, latent)) if spread == "distinct" else np.ones((n, latent))
    labels = np.arange(n) % 10
    assert png_size(plots.latent_scatter(z, labels, tmp_path / "latent.png")) == (640, 520)
    plots.latent_scatters({"AE": z, "VAE": 2 * z}, labels, tmp_path / "scatters.png")
    assert sorted(os.listdir(tmp_path)) == ["latent.png", "scatters.png"]


def test_scatter_coordinates_of_one_point_are_finite():
    for latent in (1, 2, 3, 20):
        x, y, xlabel, ylabel = plots._scatter_coordinates(np.full((1, latent), 0.5))
        assert x.shape == y.shape == (1,) and np.all(np.isfinite(x)) and np.all(np.isfinite(y))
        assert "nan" not in xlabel + ylabel


@pytest.mark.parametrize("n, latent", [(1, 20), (2, 20), (1, 3), (5, 1)])
def test_principal_components_of_too_few_points_or_units_pad_with_zeros(n, latent):
    z = np.random.default_rng(7).normal(size=(n, latent))
    pcs = plots.principal_components(z, k=2)
    assert pcs.shape == (n, 2)
    np.testing.assert_allclose(pcs[:, min(n, latent):], 0.0)
    np.testing.assert_allclose(pcs.mean(axis=0), 0.0, atol=1e-12)


NO_IMAGES = {
    "reconstructions": lambda p: plots.reconstructions(digits(0), digits(0), p),
    "samples": lambda p: plots.samples(digits(0), p),
    "manifold": lambda p: plots.manifold(lambda z: np.zeros((len(z), 784)), 0, p),
    "latent_scatter": lambda p: plots.latent_scatter(np.zeros((0, 20)), np.zeros(0, int), p),
    "latent_scatter of no units": lambda p: plots.latent_scatter(np.zeros((3, 0)), np.zeros(3, int), p),
    "latent_scatters": lambda p: plots.latent_scatters({"AE": np.zeros((0, 2))}, np.zeros(0, int), p),
    "score_histograms": lambda p: plots.score_histograms({"s": np.zeros(0)}, np.zeros(0, bool), p),
}


@pytest.mark.parametrize("name", sorted(NO_IMAGES))
def test_a_picture_of_no_images_is_refused_in_one_line(tmp_path, name):
    with pytest.raises(InputError) as e:
        NO_IMAGES[name](tmp_path / "x.png")
    assert "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []


# temporary files: the one naming rule of checkpoint.atomic_write -----------------

def test_pictures_are_written_through_checkpoint_atomic_write(tmp_path, monkeypatch):
    """plots has no temp-file naming of its own: prepare_out_dir sweeps what a killed run leaves."""
    from tinyvae import checkpoint
    seen, real = [], checkpoint.atomic_write

    def spy(path, write):
        seen.append(path)
        return real(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", spy)
    path = plots.samples(digits(4), tmp_path / "samples.png")
    assert seen == [tmp_path / "samples.png"] and png_size(path) and os.listdir(tmp_path) == ["samples.png"]


def test_a_failed_picture_write_is_one_output_error_line(tmp_path, monkeypatch):
    from tinyvae.checkpoint import OutputError
    monkeypatch.setattr(os, "replace", refuse_replace)
    with pytest.raises(OutputError) as e:
        plots.latent_scatter(np.zeros((3, 2)), np.arange(3), tmp_path / "latent.png")
    assert "\n" not in str(e.value) and str(tmp_path / "latent.png") in str(e.value)
    assert os.listdir(tmp_path) == []
