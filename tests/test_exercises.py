"""The exercises (python -m tinyvae.exercises): every reference passes its own check, every
untouched stub says it is not implemented, every catalogued mistake fails with its hint, any
other wrong answer fails with the worst entry, each error a learner makes is one line, start
never overwrites, check loads the named file alone, and the capstone gives tinyvae's number
bit for bit when it is given tinyvae's own functions."""
import inspect
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKENDS, make, one_line, put
from tinyvae.core import layers, m2, nets, vae
from tinyvae.core.layers import log_softmax_backward, log_softmax_forward, one_hot
from tinyvae.core.vae import VAEConfig
from tinyvae.data import MNIST
from tinyvae.exercises import BY_NAME, ERROR, EXERCISES, FAIL, PASS, check_function
from tinyvae.exercises.__main__ import main
from tinyvae.exercises.capstone import USED, one_epoch_neg_elbo, plugged
from tinyvae.exercises.checker import PASS_BELOW, _reference, _same, draw
from tinyvae.exercises.mistakes import StaleCatalogue, build, edited_source
from tinyvae.exercises.references import m2_unlabelled_backward, m2_unlabelled_forward
from tinyvae.exercises.stubs import stub_text
from tinyvae.gradcheck import check_backward
from tinyvae.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
NAMES = [e.name for e in EXERCISES]
MISTAKES = [(e.name, i) for e in EXERCISES for i in range(len(e.mistakes))]
ROW = re.compile(r"^  (\S+)\s+finite differences\s+(\S+)\s+reference (\S+)\s+(pass|FAIL)\s+worst entry (.*)$")


def rows(report):
    """{output: (finite-difference error or None, reference error, passed, worst entry text)}."""
    found = {}
    for line in report.lines:
        m = ROW.match(line)
        if m:
            fd = None if m.group(2) == "-" else float(m.group(2))
            found[m.group(1)] = (fd, float(m.group(3)), m.group(4) == "pass", m.group(5))
    return found


def run(capsys, *argv):
    """main(argv) in-process: (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def answer(folder, name, body):
    """A learner's file: the stub with its `raise NotImplementedError` replaced by `body`."""
    ex = BY_NAME[name]
    text = stub_text(ex).replace(f'    raise NotImplementedError("{ex.function}")\n', body)
    path = Path(folder) / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def import_line(ex):
    return f"from {ex.reference.__module__} import {ex.function}\n"


# ---- every exercise: the reference passes, the stub is not implemented, the mistakes get their hints --


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_passes_its_check(name):
    ex = BY_NAME[name]
    report = check_function(ex, ex.reference)
    assert report.status == PASS and report.lines[-1] == f"{name}: pass", report.lines
    found = rows(report)
    assert set(found) == set(draw(ex)[0].names)
    for out, (fd, ref, ok, _) in found.items():
        assert ok and ref == 0.0 and (fd is None or fd < PASS_BELOW), (out, found[out])


def test_the_cases_include_a_batch_of_one_and_are_seeded():
    for ex in EXERCISES:
        trials = draw(ex, seed=5)
        assert [t.size for t in trials] == [t.size for t in draw(ex, seed=5)]
        assert len(trials) == 4 and all(t.numeric for t in trials[:3]) == (ex.name != "adam")
        assert trials[0].size.startswith(("N=1", "xpad (1,", "x (1,", "p (1,")), trials[0].size


@pytest.mark.parametrize("name", NAMES)
def test_an_untouched_stub_fails_with_not_implemented(name, tmp_path, capsys):
    status, out, err = run(capsys, "start", name, "--dir", tmp_path)
    assert status == 0 and "wrote" in out and not err
    status, out, _ = run(capsys, "check", name, "--dir", tmp_path)
    line = one_line(out)
    assert status == ERROR and line.startswith(f"{name}: not implemented yet: {BY_NAME[name].function} in "), line


@pytest.mark.parametrize("name", NAMES)
def test_every_stub_gives_tinyvaes_forward_and_the_references_signature(name, tmp_path):
    ex = BY_NAME[name]
    path = tmp_path / f"{name}.py"
    path.write_text(stub_text(ex))
    namespace = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    assert inspect.signature(namespace[ex.function]) == inspect.signature(ex.reference)
    assert ex.derivation in path.read_text()
    trial = draw(ex)[1]
    first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731
    for given in ex.given[-1:]:          # the forward itself (col2im's _tap is a helper it calls)
        mine, theirs = namespace[given.__name__](*trial.forward_args), given(*trial.forward_args)
        assert np.array_equal(first(mine), first(theirs))


@pytest.mark.parametrize("name,index", MISTAKES, ids=[f"{n}-{i}" for n, i in MISTAKES])
def test_each_catalogued_mistake_fails_and_gets_its_hint(name, index):
    ex = BY_NAME[name]
    mistake = ex.mistakes[index]
    report = check_function(ex, build(ex, mistake))
    assert report.status == FAIL
    assert report.lines[-1] == f"{name}: known mistake, {mistake.what}: {mistake.hint}", report.lines
    failed = [line for line in report.lines[1:-1] if re.search(r"\bFAIL\b", line)]
    assert failed, report.lines
    if name != "adam" and not any(" shape " in line for line in failed):   # a wrong shape has no numbers
        assert max(fd for fd, *_ in rows(report).values()) > PASS_BELOW, report.lines  # the differences catch it


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_mistake_differs_from_the_reference_and_the_others_whatever_the_seed(seed):
    """So every catalogued mistake fails, and its hint is the only one that fits, on any --seed's cases."""
    for ex in EXERCISES:
        trials = draw(ex, seed)
        outputs = [[_reference(f, t, ex) for t in trials] for f in (ex.reference, *(build(ex, m) for m in ex.mistakes))]
        for i, a in enumerate(outputs):
            for j, b in enumerate(outputs[:i]):
                assert not all(_same(x, y, t) for x, y, t in zip(a, b, trials)), (ex.name, seed, i, j)


def _off_by_one_entry(ex):
    """The reference with 1.0 added to the last entry of its first output: a mistake no one catalogued."""
    def wrong(*args):
        out = ex.reference(*args)
        if isinstance(out, dict):
            first = min(out)
            out = {**out, first: out[first].copy()}
            out[first].reshape(-1)[-1] += 1.0
            return out
        outs = [o.copy() for o in (out if isinstance(out, tuple) else (out,))]
        outs[0].reshape(-1)[-1] += 1.0
        return tuple(outs) if isinstance(out, tuple) else outs[0]
    return wrong


@pytest.mark.parametrize("name", NAMES)
def test_a_mistake_not_in_the_catalogue_fails_with_the_generic_message_and_the_worst_entry(name):
    ex = BY_NAME[name]
    report = check_function(ex, _off_by_one_entry(ex))
    assert report.status == FAIL
    names = draw(ex)[0].names
    first = min(names) if ex.as_dict else names[0]
    fd, ref, ok, worst = rows(report)[first]
    assert not ok and ref > PASS_BELOW
    m = re.fullmatch(r"(\S+)\[([\d, ]*)\] of \(([\d, ]*)\)", worst)
    assert m and m.group(1) == first, worst
    index, shape = [int(i) for i in m.group(2).split(",")], [int(s) for s in m.group(3).strip(",").split(",")]
    assert index == [s - 1 for s in shape], worst                      # the entry that was changed
    assert report.lines[-1].startswith(f"{name}: wrong, and not a mistake the catalogue knows: the worst entry "
                                       f"is {first}[{m.group(2)}] = "), report.lines[-1]


def test_a_stale_mistake_is_refused():
    with pytest.raises(StaleCatalogue, match="not one"):
        edited_source(layers.affine_backward, (("dW = x.T @ dy + 1", "dW = 0"),))


# ---- a learner's files, through the command line -------------------------------------------------


def test_a_run_through_wrong_answer_hint_fix_pass(tmp_path, capsys):
    """The README's first steps: start, a wrong answer written by hand and its hint, the fix, a pass."""
    assert run(capsys, "start", "reparameterize", "--dir", tmp_path)[0] == 0
    answer(tmp_path, "reparameterize", "    std, eps = cache\n    return dz, dz * eps * std\n")
    status, out, _ = run(capsys, "check", "reparameterize", "--dir", tmp_path)
    assert status == FAIL and out.splitlines()[-1].startswith("reparameterize: known mistake, logvar used as log sigma")
    assert re.search(r"dlogvar .* 3\.3e-01 .* FAIL", out)                   # off by a factor 2 everywhere: 1/3
    answer(tmp_path, "reparameterize", "    std, eps = cache\n    return dz, dz * eps * std / 2\n")
    status, out, _ = run(capsys, "check", "reparameterize", "--dir", tmp_path)
    assert status == PASS and out.splitlines()[-1] == "reparameterize: pass"


@pytest.mark.parametrize("name,body,hint", [
    ("kl", "    mu, var = cache\n    return -mu * dkl[:, None], 0.5 * (var - 1.0) * dkl[:, None]\n",
     "the KL's dmu sign"),
    ("affine", "    x, W = cache\n    return dy @ W.T, dy.T @ x, dy.sum(axis=0)\n", "dW transposed"),
    ("adam", "    xp = namespace_of(p)\n    m = b1 * m + (1 - b1) * g\n    v = b2 * v + (1 - b2) * g * g\n"
             "    return p - lr * m / (xp.sqrt(v) + eps), m, v\n", "Adam without bias correction"),
    ("m2_unlabelled", "    pi, L_u, log_pi = cache\n    return pi * dU, pi * (L_u + log_pi + 1.0) * dU\n",
     "a missing 1/N"),
])
def test_a_hand_written_mistake_gets_its_hint(name, body, hint, tmp_path, capsys):
    answer(tmp_path, name, body)
    status, out, _ = run(capsys, "check", name, "--dir", tmp_path)
    assert status == FAIL and out.splitlines()[-1].startswith(f"{name}: known mistake, {hint}:"), out


ERRORS = [
    ("syntax", "    return dz, (dz\n", r"^reparameterize: \S+reparameterize\.py line \d+: SyntaxError: "),
    ("arity", "    return dz\n", r"returned one array of shape \(1, \d\), expected 2 values \(dmu, dlogvar\)$"),
    ("too-many", "    return dz, dz, dz\n", r"returned 3 values, expected 2 \(dmu, dlogvar\)$"),
    ("shape", "    std, eps = cache\n    return dz.sum(axis=1), 0.5 * dz * eps * std\n",
     r"dmu has shape \(1,\), expected \(1, \d\) \(case N=1, L=\d\)$"),
    ("transposed", "    std, eps = cache\n    return dz.T, 0.5 * dz * eps * std\n",
     r"dmu has shape \((\d), (\d)\), expected \(\2, \1\): its transpose \(case N=\d, L=\d\)$"),
    ("not-an-array", "    std, eps = cache\n    return dz.tolist(), 0.5 * dz * eps * std\n",
     r"dmu is a list, expected a NumPy array$"),
    ("nan", "    std, eps = cache\n    return dz, 0.5 * dz * eps * std / 0.0\n", r"dlogvar\[0, 0\] is (-?inf|nan) "),
    ("in-place", "    std, eps = cache\n    eps *= 2.0\n    return dz, 0.25 * dz * eps * std\n",
     r"changed its argument cache\[1\] in place \(entry \[0, 0\]\)"),
    ("raises", "    std, eps = cache\n    return dz, 0.5 * dz * epsilon * std\n",
     r"raised NameError at \S+reparameterize\.py line \d+ \(case N=1, L=\d\): name 'epsilon' is not defined$"),
    ("import", None, r"reparameterize\.py line 1: ModuleNotFoundError: No module named 'no_such_module'$"),
    ("renamed", "    return dz, dz\n\n\nbackward = reparameterize_backward\ndel reparameterize_backward\n",
     r"defines no function reparameterize_backward: keep the name the stub gave it$"),
    ("not-started", "", r"^reparameterize: not started: python -m tinyvae.exercises start reparameterize$"),
]


@pytest.mark.parametrize("case,body,expected", ERRORS, ids=[e[0] for e in ERRORS])
def test_each_error_a_learner_makes_is_one_line(case, body, expected, tmp_path, capsys):
    if case == "import":
        (tmp_path / "reparameterize.py").write_text("import no_such_module\n")
    elif case != "not-started":
        answer(tmp_path, "reparameterize", body)
    status, out, err = run(capsys, "check", "reparameterize", "--dir", tmp_path)
    assert status == ERROR and not err
    assert re.search(expected, one_line(out)), out


def test_a_bad_name_or_flag_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", "afine", "--dir", str(tmp_path)])
    assert e.value.code == 2 and "did you mean affine?" in one_line(capsys.readouterr().err)
    with pytest.raises(SystemExit) as e:
        main(["train", "--limit", "0"])
    assert e.value.code == 2 and "--limit" in one_line(capsys.readouterr().err)
    status, out, err = run(capsys, "check", "--dir", tmp_path / "nothing")
    assert status == ERROR and "no exercise started" in one_line(err) and not out


def test_start_never_overwrites_without_force(tmp_path, capsys):
    path = tmp_path / "ex" / "kl.py"
    assert run(capsys, "start", "kl", "--dir", tmp_path / "ex")[0] == 0
    path.write_text("# my work\n")
    status, out, err = run(capsys, "start", "kl", "--dir", tmp_path / "ex")
    assert status == ERROR and not out and "pass --force" in one_line(err)
    assert path.read_text() == "# my work\n"
    assert run(capsys, "start", "kl", "--dir", tmp_path / "ex", "--force")[0] == 0
    assert 'raise NotImplementedError("kl_normal_backward")' in path.read_text()
    assert "--dir" in path.read_text()            # the commands in the stub name the folder it is in


def test_check_loads_only_the_named_file(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ex"
    answer(folder, "affine", "    x, W = cache\n    return dy @ W.T, x.T @ dy, dy.sum(axis=0)\n")
    marker = tmp_path / "imported"
    trap = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("__init__", "helpers", "relu", "kl", "affine_test"):
        (folder / f"{name}.py").write_text(trap)
    modules, path = set(sys.modules), list(sys.path)
    monkeypatch.chdir(folder)                     # even from inside the folder
    status, out, _ = run(capsys, "check", "affine", "--dir", ".")
    assert status == PASS, out
    assert not marker.exists(), marker.read_text()
    new = [name for name in set(sys.modules) - modules
           if name in ("helpers", "relu", "kl", "affine_test", "affine")
           or str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(folder))]
    assert not new and sys.path == path, new
    assert not (folder / "__pycache__").exists()


def test_check_with_no_name_checks_every_started_one(tmp_path, capsys):
    answer(tmp_path, "relu", "    return dy * (cache > 0)\n")
    answer(tmp_path, "kl", "    mu, var = cache\n    return -mu * dkl[:, None], 0.5 * (var - 1.0) * dkl[:, None]\n")
    status, out, _ = run(capsys, "check", "--dir", tmp_path)
    assert status == FAIL and "relu: pass" in out and "kl: known mistake, the KL's dmu sign" in out
    assert out.splitlines()[-1] == f"1 passing, 1 failing, {len(EXERCISES) - 2} not started"


def test_list_shows_every_exercise_in_order_with_its_status(tmp_path, capsys):
    answer(tmp_path, "affine", "    x, W = cache\n    return dy @ W.T, x.T @ dy, dy.sum(axis=0)\n")
    run(capsys, "start", "relu", "--dir", tmp_path)
    answer(tmp_path, "sigmoid", "    return dy * cache\n")
    status, out, _ = run(capsys, "list", "--dir", tmp_path)
    lines = out.splitlines()
    assert status == 0 and [line.split()[1] for line in lines[:-1]] == NAMES
    assert lines[0].endswith("passing") and lines[1].endswith("failing (not implemented yet)")
    assert lines[2].endswith("failing") and lines[3].endswith("not started")
    assert lines[-1] == f"next: python -m tinyvae.exercises check relu --dir {tmp_path}"


def test_hint_names_the_formula_and_the_known_mistakes(capsys):
    status, out, _ = run(capsys, "hint", "kl")
    assert status == 0 and "docs/gradients.md#kl" in out and "the KL's dmu sign" in out


def test_solution_asks_first_and_refuses_without_an_answer(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    status, out, err = run(capsys, "solution", "kl")
    assert status == ERROR and "pass --yes" in one_line(err) and "def " not in out
    monkeypatch.setattr(sys, "stdin", None)
    status, out, err = run(capsys, "solution", "kl")
    assert status == ERROR and "no stdin" in one_line(err) and "def " not in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    assert run(capsys, "solution", "kl")[1] == "not shown\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert "def kl_normal_backward(dkl, cache):" in run(capsys, "solution", "kl")[1]
    status, out, _ = run(capsys, "solution", "adam", "--yes")
    assert status == 0 and "# tinyvae/core/optim.py: Adam.step" in out and "def adam_step(" in out


# ---- the M2 exercise's pair: a backward of its own, so checked like the core's -----------------


@pytest.mark.parametrize("name", BACKENDS)
def test_m2_unlabelled_pair_matches_finite_differences(name):
    be = make(name)
    rng = np.random.default_rng(1)
    log_pi = log_softmax_forward(put(be, rng.standard_normal((3, 4))))[0]
    errors = check_backward(m2_unlabelled_forward, m2_unlabelled_backward, [put(be, 5 + rng.standard_normal((3, 4))),
                                                                             log_pi])
    assert max(errors) < 1e-8, errors


def test_m2_unlabelled_pair_is_the_part_of_m2_loss_and_grads():
    """m2.loss_and_grads's gradients, rebuilt with the exercise's pair in place of its unlabelled lines."""
    config = m2.M2Config(input_dim=5, enc_hidden=(4,), dec_hidden=(4,), latent_dim=2, activation="tanh",
                         n_classes=3, cls_hidden=(4,), alpha=0.7)
    rng = np.random.default_rng(0)
    params = {k: 0.5 * rng.standard_normal(s) for k, s in vae.param_shapes(config).items()}
    Nl, Nu, K = 2, 3, config.n_classes
    x_l, y_l, x_u = rng.uniform(0, 1, (Nl, 5)), rng.integers(0, K, Nl), rng.uniform(0, 1, (Nu, 5))
    eps = rng.standard_normal((Nl + Nu * K, 2))
    parts, want = m2.loss_and_grads(params, x_l, y_l, x_u, eps, config)

    X, Y = m2.rows(x_l, y_l, x_u, K)
    logits, cls_caches = nets.net_forward(params, "cls", config.classifier_layers, np.concatenate([x_l, x_u]))
    log_pi, sm_cache = log_softmax_forward(logits)
    recon, kl, cache = vae.neg_elbo_forward(params, X, eps, config, Y)
    U, u_cache = m2_unlabelled_forward(np.reshape((recon + kl)[Nl:], (Nu, K)), log_pi[Nl:])
    dL_u, dlog_pi_u = m2_unlabelled_backward(np.asarray(1.0), u_cache)
    w = np.concatenate([np.full(Nl, 1.0 / Nl), dL_u.reshape(-1)])
    grads = vae.neg_elbo_backward(w, w, cache, config)
    dlog_pi_l = -config.alpha * one_hot(y_l, K, like=x_l) / Nl
    dlogits = log_softmax_backward(np.concatenate([dlog_pi_l, dlog_pi_u]), sm_cache)
    nets.net_backward(dlogits, cls_caches, "cls", config.classifier_layers, grads, need_dx=False)
    assert float(U) == pytest.approx(float(parts.unlabelled), abs=1e-12)
    assert set(grads) == set(want)
    for k in want:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)


# ---- the capstone ----------------------------------------------------------------------------------

TINY = VAEConfig(input_dim=12, enc_hidden=(6,), dec_hidden=(6,), latent_dim=2, init="pytorch")


def tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((200, 12)), rng.random((40, 12))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_capstone_reproduces_the_reference_bit_for_bit_given_the_reference_functions(dtype):
    x_train, x_test = tiny_data()
    tconfig = TrainConfig(epochs=1, batch_size=32, seed=3)
    references = {name: BY_NAME[name].reference for name in USED}
    theirs = one_epoch_neg_elbo(x_train, x_test, TINY, tconfig, dtype=dtype)
    assert one_epoch_neg_elbo(x_train, x_test, TINY, tconfig, references, dtype=dtype) == theirs
    wrong = {**references, "kl": build(BY_NAME["kl"], BY_NAME["kl"].mistakes[0])}     # and it can differ
    assert one_epoch_neg_elbo(x_train, x_test, TINY, tconfig, wrong, dtype=dtype) != theirs


def test_the_capstone_runs_the_learners_pieces_and_puts_tinyvaes_back():
    calls = {name: 0 for name in USED}

    def counted(name):
        def piece(*args, **kwargs):
            calls[name] += 1
            return BY_NAME[name].reference(*args, **kwargs)
        return piece
    before = (nets.Dense.OP, dict(layers.ACTIVATIONS), vae.neg_elbo_backward, vae.kl_normal_backward,
              vae.bernoulli_nll_backward, vae.reparameterize_backward)
    x_train, x_test = tiny_data()
    one_epoch_neg_elbo(x_train, x_test, TINY, TrainConfig(epochs=1, batch_size=50), {n: counted(n) for n in USED})
    assert all(calls.values()), calls
    broken = {"relu": lambda dy, cache: 1 / 0}
    with pytest.raises(ZeroDivisionError):
        one_epoch_neg_elbo(x_train, x_test, TINY, TrainConfig(epochs=1, batch_size=50), broken)
    after = (nets.Dense.OP, dict(layers.ACTIVATIONS), vae.neg_elbo_backward, vae.kl_normal_backward,
             vae.bernoulli_nll_backward, vae.reparameterize_backward)
    assert after == before


def test_the_capstone_plugs_pieces_into_the_learners_own_chain(tmp_path):
    """A learner's neg_elbo_backward calls what its file imported: their passing pieces go there too."""
    answer(tmp_path, "neg_elbo", "    return tinyvae_chain(drecon, dkl, cache, config)\n")
    path = tmp_path / "neg_elbo.py"
    path.write_text(path.read_text() + "\n\nfrom tinyvae.core.vae import neg_elbo_backward as tinyvae_chain\n")
    from tinyvae.exercises.checker import load
    chain = load(BY_NAME["neg_elbo"], tmp_path)
    seen = []
    kl = lambda dkl, cache: seen.append(1) or BY_NAME["kl"].reference(dkl, cache)  # noqa: E731
    with plugged({"neg_elbo": chain, "kl": kl}):
        assert chain.__globals__["kl_normal_backward"] is kl and vae.kl_normal_backward is kl
    assert chain.__globals__["kl_normal_backward"] is BY_NAME["kl"].reference


def _fake_mnist(n=64, seed=0):
    rng = np.random.default_rng(seed)
    images = lambda k: (rng.random((k, 784)) < 0.2).astype(np.uint8) * 255  # noqa: E731
    return MNIST(images(n), rng.integers(0, 10, n), images(n), rng.integers(0, 10, n))


def test_train_prints_both_numbers_the_same_with_the_reference_functions(tmp_path, capsys, monkeypatch):
    import tinyvae.data
    monkeypatch.setattr(tinyvae.data, "load_mnist", lambda *a, **k: _fake_mnist())
    for ex in EXERCISES:
        (tmp_path / f"{ex.name}.py").write_text(import_line(ex))
    status, out, _ = run(capsys, "train", "--dir", tmp_path, "--limit", 40)
    assert status == 0, out
    yours, theirs = re.findall(r"test -ELBO (\S+) nats per image on 40 test images", out)
    assert yours == theirs and "the same number, bit for bit" in out
    assert "yours (passing their checks): affine_backward, relu_backward, bernoulli_nll_backward" in out
    assert "not used by this model: sigmoid_backward, softplus_backward, col2im" in out


def test_train_says_which_pieces_are_tinyvaes(tmp_path, capsys, monkeypatch):
    import tinyvae.data
    monkeypatch.setattr(tinyvae.data, "load_mnist", lambda *a, **k: _fake_mnist())
    answer(tmp_path, "relu", "    return dy * (cache > 0)\n")
    run(capsys, "start", "kl", "--dir", tmp_path)                      # started, not passing
    status, out, _ = run(capsys, "train", "--dir", tmp_path, "--limit", 30)
    assert status == 0
    assert "yours (passing their checks): relu_backward\n" in out
    assert "tinyvae's (yours not started or not passing): affine_backward, bernoulli_nll_backward, " \
           "reparameterize_backward, kl_normal_backward, neg_elbo_backward, adam_step\n" in out


def test_train_on_real_mnist_with_a_limit(tmp_path, capsys):
    for name in ("relu", "kl", "adam"):
        (tmp_path / f"{name}.py").write_text(import_line(BY_NAME[name]))
    status, out, _ = run(capsys, "train", "--dir", tmp_path, "--limit", 256)
    assert status == 0 and "the same number, bit for bit" in out, out


def test_every_known_mistake_is_listed_in_the_docs():
    text = " ".join((ROOT / "docs" / "exercises.md").read_text(encoding="utf-8").split())   # lines rewrapped
    missing = [f"{e.name}: {m.what}" for e in EXERCISES for m in e.mistakes if m.what not in text]
    assert not missing, missing
    assert all(f"`{e.function}`" in text for e in EXERCISES)
