"""The latent explorer page: the Python decoder's pixels, in a real browser, offline.

The browser tests open explorer.html in headless Chromium: Debian's `chromium`
and `chromium-driver`, driven by Selenium through the chromedriver found on
PATH, so Selenium downloads nothing. Without them those tests skip and say
why; under CI=true a missing browser fails instead (.ci/run installs it).
The page checks that need no browser (valid HTML, nothing external, the
embedded weights, the command line) always run.
"""
import base64
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from tinyvae import explorer
from tinyvae.backend import get_backend
from tinyvae.checkpoint import load_checkpoint
from tinyvae.data import MNIST, to_unit_interval
from tinyvae.errors import InputError
from tinyvae.core.nets import Conv, ConvTranspose, Dense, Flatten, Reshape
from tinyvae.specs import keras_conv_decoder
from tinyvae.train import TrainConfig, fit
from tinyvae.core.vae import VAEConfig, decode_mean, encode, init_params

TOLERANCE = 1e-5            # max |JS pixel - Python pixel|, the bar
Z_POINTS = [(0.0, 0.0), (0.37, -1.25), (-2.6, 1.9), (3.7, -3.1), (-0.05, 0.8)]


# ---------------------------------------------------------------------------
# Models: small decoders of every layer kind and activation
# ---------------------------------------------------------------------------


def odd_conv_decoder():
    """Every conv path at once: non-square images, H and W padded differently, k = 2, 3, 5, four activations."""
    return (Dense(3 * 4 * 2, "relu"), Reshape((3, 4, 2)),
            Conv(3, 3, 2, "leaky_relu"),             # (2, 2, 3): 'same' pads H (1, 1), W (0, 1)
            Reshape((1, 4, 3)),
            ConvTranspose(4, 3, 2, "softplus"),      # (2, 8, 4)
            ConvTranspose(2, 5, 2, "sigmoid"),       # (4, 16, 2): 'same' pads (1, 2)
            ConvTranspose(1, 2, 1, "tanh"),          # (4, 16, 1): 'same' pads (0, 1)
            Flatten())                               # (64,): drawn as 8 x 8


CONFIGS = {
    "mlp": VAEConfig(input_dim=784, enc_hidden=(8,), dec_hidden=(32, 24), latent_dim=2),
    "mlp_gaussian_softplus": VAEConfig(input_dim=36, enc_hidden=(8,), dec_hidden=(16,), latent_dim=2,
                                       activation="softplus", likelihood="gaussian"),
    "cvae_leaky_relu": VAEConfig(input_dim=49, enc_hidden=(8,), dec_hidden=(16,), latent_dim=2,
                                 activation="leaky_relu", n_classes=3),
    "keras_conv": VAEConfig(input_dim=784, enc_hidden=(8,), latent_dim=2, decoder=keras_conv_decoder()),
    "odd_conv": VAEConfig(input_dim=64, enc_hidden=(8,), latent_dim=2, decoder=odd_conv_decoder()),
}


def random_params(config, seed=0):
    """float32 parameters with every weight and bias nonzero (init_params, plus noise)."""
    params = init_params(config, get_backend("numpy", seed=seed))
    rng = np.random.default_rng(seed)
    return {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in params.items()}


def python_pixels(params, config, z, label=None):
    """The Python decoder's picture for one z (and label), in float64 from the same float32 weights."""
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    y = None if label is None else np.eye(config.n_classes)[[label]]
    return decode_mean(p64, np.array([z], dtype=np.float64), config, y)[0]


def scatter(n=300, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)), rng.integers(0, 10, n)


def record_of(page: Path) -> dict:
    """The JSON model record embedded in a page."""
    text = page.read_text()
    data = re.search(r'<script type="application/json" id="model-data">(.*?)</script>', text, re.S)
    return json.loads(data.group(1))


# ---------------------------------------------------------------------------
# Checks on the page's text (no browser)
# ---------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class PageChecker(HTMLParser):
    """Collect the problems of an HTML page: mismatched or unclosed tags, doctypes, external URLs."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems, self.open, self.doctypes, self.ids = [], [], 0, []

    def handle_decl(self, decl):
        if decl.lower().startswith("doctype"):
            self.doctypes += 1
            if decl.lower() != "doctype html":
                self.problems.append(f"doctype {decl!r} is not 'DOCTYPE html'")

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "action", "data", "poster") and re.match(r"\s*(https?:)?//", value or ""):
                self.problems.append(f"<{tag} {name}={value!r}> loads from the network")
            if name == "id":
                self.ids.append(value)
        if tag not in VOID:
            self.open.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.open.pop()

    def handle_endtag(self, tag):
        if not self.open or self.open[-1][0] != tag:
            self.problems.append(f"</{tag}> at {self.getpos()} closes {self.open[-1] if self.open else 'nothing'}")
        else:
            self.open.pop()

    def handle_data(self, data):
        if self.open and self.open[-1][0] == "style" and re.search(r"url\(|@import", data):
            self.problems.append("the style loads a url() or @import")


def page_problems(text: str) -> list:
    """Every problem PageChecker finds in `text`, plus the ones only visible at the end."""
    checker = PageChecker()
    checker.feed(text)
    checker.close()
    problems = list(checker.problems)
    if checker.doctypes != 1:
        problems.append(f"{checker.doctypes} doctypes, expected 1")
    if not text.lstrip().lower().startswith("<!doctype html>"):
        problems.append("the page does not start with <!DOCTYPE html>")
    problems += [f"<{tag}> opened at {pos} is never closed" for tag, pos in checker.open]
    duplicates = {i for i in checker.ids if checker.ids.count(i) > 1}
    if duplicates:
        problems.append(f"duplicate ids {sorted(duplicates)}")
    if re.search(r"<script[^>]*\bsrc=", text, re.I):
        problems.append("a <script src=...>: the page must hold its code")
    if re.search(r"https?://", text):
        problems.append("an http(s):// address appears in the page")
    return problems


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_page_is_valid_html_and_holds_everything(tmp_path, name):
    config = CONFIGS[name]
    page = explorer.write_explorer(tmp_path / "explorer.html", random_params(config), config, *scatter())
    assert page_problems(page.read_text()) == []
    assert os.listdir(tmp_path) == ["explorer.html"]           # no temporary file left behind


@pytest.mark.parametrize("broken, problem", [
    ("<section><p>x</p>", "never closed"),
    ("<script>let a = 1;", "never closed"),
    ("<p>a</div>", "closes"),
    ('<img src="https://example.com/x.png" alt="">', "loads from the network"),
    ('<script src="//cdn.example.com/lib.js"></script>', "<script src"),
    ("<!DOCTYPE html>", "2 doctypes"),
    ('<p id="plane">twice</p>', "duplicate ids"),
])
def test_the_html_check_catches_broken_pages(tmp_path, broken, problem):
    config = CONFIGS["mlp"]
    text = explorer.page_html(explorer.explorer_model(random_params(config), config))
    assert page_problems(text) == []
    bad = text.replace("</main>", broken + "</main>")
    assert any(problem in p for p in page_problems(bad)), page_problems(bad)


def test_page_holds_the_exact_float32_weights_and_the_scatter(tmp_path):
    config = CONFIGS["keras_conv"]
    params = random_params(config)
    z, labels = scatter()
    record = record_of(explorer.write_explorer(tmp_path / "e.html", params, config, z, labels))
    assert [layer["kind"] for layer in record["layers"]] == [
        "dense", "reshape", "conv_transpose", "conv_transpose", "conv_transpose", "flatten"]
    for i, layer in enumerate(record["layers"]):
        for p in ("W", "b"):
            if f"dec.{i}.{p}" in params:
                got = np.frombuffer(base64.b64decode(layer[p]), dtype="<f4")
                np.testing.assert_array_equal(got, params[f"dec.{i}.{p}"].ravel())
            else:
                assert p not in layer
    got_z = np.frombuffer(base64.b64decode(record["points"]["z"]), dtype="<f4").reshape(-1, 2)
    np.testing.assert_array_equal(got_z, z.astype(np.float32))
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(record["points"]["labels"]), np.uint8), labels)
    assert record["image_shape"] == [28, 28] and record["view"][1] >= 3.0


def test_write_explorer_refuses_what_it_cannot_show(tmp_path):
    config20 = VAEConfig(input_dim=784, enc_hidden=(8,), dec_hidden=(8,), latent_dim=20)
    with pytest.raises(InputError, match="latent_dim=20.*--latent-dim 2"):
        explorer.write_explorer(tmp_path / "e.html", random_params(config20), config20)
    config = CONFIGS["mlp"]
    params = random_params(config)
    with pytest.raises(InputError, match="lack dec.1.W"):
        explorer.write_explorer(tmp_path / "e.html", {k: v for k, v in params.items() if k != "dec.1.W"}, config)
    with pytest.raises(InputError, match=r"dec.0.W has shape \(3, 32\)"):
        explorer.write_explorer(tmp_path / "e.html", {**params, "dec.0.W": np.zeros((3, 32), np.float32)}, config)
    with pytest.raises(InputError, match="do not match"):
        explorer.write_explorer(tmp_path / "e.html", params, config, np.zeros((5, 2)), np.zeros(4, int))
    assert not (tmp_path / "e.html").exists()


def test_an_existing_page_is_replaced_whole(tmp_path):
    config = CONFIGS["mlp"]
    path = tmp_path / "explorer.html"
    path.write_text("old")
    explorer.write_explorer(path, random_params(config), config, caption="new one")
    assert "new one" in path.read_text() and os.listdir(tmp_path) == ["explorer.html"]


# ---- the command line: a page for a finished run ---------------------------


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A finished one-epoch run of a 2-D MLP VAE on a fake 60 + 60 image MNIST, which load_mnist returns."""
    rng = np.random.default_rng(0)
    fake = MNIST(rng.integers(0, 256, (60, 784), dtype=np.uint8), np.arange(60) % 10,
                 rng.integers(0, 256, (60, 784), dtype=np.uint8), np.arange(60) % 10)
    config = VAEConfig(input_dim=784, enc_hidden=(8,), dec_hidden=(8,), latent_dim=2)
    tconfig = TrainConfig(epochs=1, batch_size=30, iw_k=0)
    result = fit(to_unit_interval(fake.x_train), to_unit_interval(fake.x_test), config, tconfig,
                 get_backend("numpy", seed=tconfig.seed), tmp_path, progress=False)
    seen = {}

    def fake_load_mnist(data_dir=None, **kwargs):
        seen["data_dir"] = data_dir
        return fake

    monkeypatch.setattr(explorer, "load_mnist", fake_load_mnist)
    return tmp_path, result, seen


def test_command_writes_the_page_of_a_run(run_dir, capsys):
    path, result, seen = run_dir
    assert explorer.main([str(path), "--data-dir", str(path / "idx")]) == 0
    assert seen["data_dir"] == path / "idx"
    assert f"wrote {path / 'explorer.html'}" in capsys.readouterr().out
    record = record_of(path / "explorer.html")
    assert record["caption"] == f"MNIST, 1 epoch, test -ELBO {result.metrics['test_neg_elbo']:.2f} nats per image"
    assert explorer.run_caption([]) == "MNIST"
    got = np.frombuffer(base64.b64decode(record["layers"][1]["W"]), dtype="<f4")
    np.testing.assert_array_equal(got, result.params["dec.1.W"].ravel())
    # the scatter: the test images' z means under the trained encoder
    x = to_unit_interval(explorer.load_mnist().x_test)
    z = np.frombuffer(base64.b64decode(record["points"]["z"]), dtype="<f4").reshape(-1, 2)
    config = VAEConfig.from_dict(result.metrics["config"])
    np.testing.assert_allclose(z, encode(result.params, x, config)[0], rtol=1e-6, atol=1e-6)
    assert len(base64.b64decode(record["points"]["labels"])) == 60


def test_command_says_what_is_wrong_in_one_line(tmp_path, capsys):
    assert explorer.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no checkpoint at") and "\n" not in err


def test_the_demo_writes_the_page_for_a_2d_latent_model(tmp_path, monkeypatch):
    from test_cli import SMALL, common, demo        # demos/mnist.py, imported as its own tests do

    rng = np.random.default_rng(0)
    fake = MNIST(rng.integers(0, 256, (100, 784), dtype=np.uint8), np.arange(100) % 10,
                 rng.integers(0, 256, (50, 784), dtype=np.uint8), np.arange(50) % 10)
    monkeypatch.setattr(common, "load_mnist", lambda data_dir=None, **kw: fake)
    for latent in (2, 3):
        out = tmp_path / f"z{latent}"
        assert demo.main([*SMALL, "--epochs", "1", "--latent-dim", str(latent), "--out", str(out)]) == 0
        assert (out / "explorer.html").exists() == (latent == 2)
    params, _, _ = load_checkpoint(tmp_path / "z2" / "checkpoint.npz", get_backend("numpy"))
    record = record_of(tmp_path / "z2" / "explorer.html")
    got = np.frombuffer(base64.b64decode(record["layers"][-1]["W"]), dtype="<f4")
    np.testing.assert_array_equal(got, params[f"dec.{len(record['layers']) - 1}.W"].ravel())
    assert len(base64.b64decode(record["points"]["labels"])) == 50
    assert record["caption"].startswith("MNIST, 1 epoch, test -ELBO ")


# ---------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------


def _browser_paths():
    """(chromium, chromedriver) paths, or a reason why they cannot be used."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, 'selenium is not installed: python -m pip install -e ".[test]"'
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        return None, ("no Chromium and chromedriver on PATH: install Debian's packages with "
                      "apt-get install -y chromium chromium-driver (.ci/run does this as root)")
    return (chromium, driver), None


def skip_or_fail(reason):
    """Skip, saying why; but under CI=true a browser test that cannot run is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the browser test cannot run: {reason}")
    pytest.skip(reason)


def test_a_missing_browser_skips_but_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium"):
        skip_or_fail("no Chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true.*no Chromium"):
        skip_or_fail("no Chromium")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium with the network off: offline, and every host name unresolvable."""
    paths, reason = _browser_paths()
    if paths is None:
        skip_or_fail(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options.add_argument("--no-sandbox")        # Chromium refuses to run as root with its sandbox
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # An explicit driver path: Selenium Manager is never asked to find (or fetch) one.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    yield driver
    driver.quit()


def open_page(driver, page: Path, console_errors_ok=False) -> list:
    """Load `page` from disk, wait for window.explorer; returns every URL the page requested.

    Any error on the browser console (a failed script, a blocked request) fails
    the test unless `console_errors_ok`.
    """
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("performance")                   # drop what earlier pages logged
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return !!(window.explorer && window.explorer.ready)"))
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert console_errors_ok or errors == [], errors
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def js_pixels(driver, z, label=None):
    """Set z (and y) through the page's own interface and read the decoded picture back."""
    if label is not None:
        driver.execute_script("window.explorer.setLabel(arguments[0])", label)
    driver.execute_script("window.explorer.setZ(arguments[0], arguments[1])", *z)
    return np.array(driver.execute_script("return window.explorer.pixels()"))


def max_difference(driver, page, params, config):
    """max |JS - Python| over Z_POINTS (and every label of a CVAE)."""
    open_page(driver, page)
    labels = range(config.n_classes) if config.n_classes else [None]
    worst = 0.0
    for label in labels:
        for z in Z_POINTS:
            want = python_pixels(params, config, z, label)
            got = js_pixels(driver, z, label)
            assert got.shape == want.shape
            worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_page_decodes_like_python(browser, tmp_path, name):
    config = CONFIGS[name]
    params = random_params(config)
    page = explorer.write_explorer(tmp_path / "explorer.html", params, config, *scatter())
    worst = max_difference(browser, page, params, config)
    print(f"{name}: max |JS - Python| = {worst:.2e}")
    assert worst < TOLERANCE
    # the pixels vary: a comparison of two constant pictures would prove little
    assert np.ptp(js_pixels(browser, Z_POINTS[1])) > 0.05


@pytest.mark.parametrize("name", ["mlp", "odd_conv"])
def test_the_comparison_catches_a_wrong_weight(browser, tmp_path, name):
    config = CONFIGS[name]
    params = random_params(config)
    last = max(int(k.split(".")[1]) for k in params if k.startswith("dec.") and k.endswith(".b"))
    wrong = {**params, f"dec.{last}.b": params[f"dec.{last}.b"] + np.float32(1e-3)}
    page = explorer.write_explorer(tmp_path / "explorer.html", wrong, config)
    assert max_difference(browser, page, params, config) > TOLERANCE


def element_png(element) -> np.ndarray:
    """A screenshot of one element as RGB floats in [0, 1], (H, W, 3)."""
    return imread(io.BytesIO(element.screenshot_as_png), format="png")[:, :, :3]


def test_page_renders_offline_and_requests_nothing(browser, tmp_path):
    from selenium.webdriver.common.by import By

    config = CONFIGS["mlp"]
    params = random_params(config)
    z, labels = scatter()
    z = np.abs(z) + 0.5                                          # every point up and to the right of 0
    page = explorer.write_explorer(tmp_path / "explorer.html", params, config, z, labels)
    urls = open_page(browser, page)
    assert page.resolve().as_uri() in urls                       # the log does see requests
    assert [u for u in urls if not u.startswith(("file:", "data:"))] == []
    assert browser.execute_script("return navigator.onLine") is False
    # The digit canvas shows the decoded picture: ink 1 - pixel, each pixel a 10 x 10 block.
    pixels = js_pixels(browser, Z_POINTS[1]).reshape(28, 28)
    shot = element_png(browser.find_element(By.ID, "digit")).mean(axis=2)
    h, w = shot.shape
    centres = shot[(np.arange(28) * h // 28 + h // 56)][:, (np.arange(28) * w // 28 + w // 56)]
    assert np.max(np.abs(centres - (1 - pixels))) < 2 / 255 + 1e-6
    # The plane is not blank: the scatter's coloured points are there, where their z is.
    plane = element_png(browser.find_element(By.ID, "plane"))
    coloured = (plane.max(axis=2) - plane.min(axis=2)) > 0.1      # grid, axes and text are grey
    rows, cols = np.nonzero(coloured)
    assert len(rows) > 500
    h, w = coloured.shape
    assert rows.max() < h / 2 and cols.min() > w / 2              # z2 grows upwards, z1 rightwards


def test_the_request_check_sees_an_external_request(browser, tmp_path):
    config = CONFIGS["mlp"]
    page = explorer.write_explorer(tmp_path / "explorer.html", random_params(config), config)
    external = "https://example.com/tracker.png"
    page.write_text(page.read_text().replace("</main>", f'<img src="{external}" alt=""></main>'))
    assert external in open_page(browser, page, console_errors_ok=True)


def test_mouse_click_keys_and_digit_selector(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    config = CONFIGS["cvae_leaky_relu"]
    params = random_params(config)
    page = explorer.write_explorer(tmp_path / "explorer.html", params, config, *scatter())
    open_page(browser, page)
    lo, hi = record_of(page)["view"]
    plane = browser.find_element(By.ID, "plane")
    span = plane.size["width"] - 2 * 40                          # the plane's z square, in pixels
    z_of = lambda: np.array(browser.execute_script("return window.explorer.z()"))
    # hovering a quarter of the square right of and above the centre decodes z = (hi/2, hi/2)
    ActionChains(browser).move_to_element_with_offset(plane, span // 4, -span // 4).perform()
    browser.execute_script("return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    np.testing.assert_allclose(z_of(), [hi / 2, hi / 2], atol=2 * (hi - lo) / span)
    ActionChains(browser).click().perform()                     # pin it
    pinned = z_of()
    ActionChains(browser).move_by_offset(0, span // 3).perform()
    ActionChains(browser).move_to_element_with_offset(browser.find_element(By.ID, "readout"), 0, 0).perform()
    browser.execute_script("return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    np.testing.assert_array_equal(z_of(), pinned)               # the cursor left: the pin shows
    plane.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_DOWN)
    step = 0.05 * (hi - lo) / 8
    np.testing.assert_allclose(z_of(), pinned + [2 * step, -step], atol=1e-12)
    # the digit selector changes y for the same z
    browser.find_element(By.ID, "label-2").click()
    got = np.array(browser.execute_script("return window.explorer.pixels()"))
    assert np.max(np.abs(got - python_pixels(params, config, z_of(), 2))) < TOLERANCE
    assert "y = 2" in browser.find_element(By.ID, "readout").text
