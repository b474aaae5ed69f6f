"""The README's Python snippets run as printed: each one alone, in a fresh interpreter,
and twice with the same output (every one is seeded)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_snippets():
    return SNIPPET.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def run_alone(code, cwd):
    """Run `code` as its own program, with this checkout's tinyvae, from an empty folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_readme_has_python_snippets():
    assert len(readme_snippets()) >= 2


@pytest.mark.parametrize("index", range(len(readme_snippets())))
def test_readme_snippet_runs_alone_and_prints_the_same_twice(index, tmp_path):
    code = readme_snippets()[index]
    first, second = run_alone(code, tmp_path), run_alone(code, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.strip(), "a README snippet should print what it shows"
    assert first.stdout == second.stdout, "the snippet is not seeded: its output changed"


def test_the_gradient_check_snippet_prints_a_small_error(tmp_path):
    code = next(c for c in readme_snippets() if "check_model_gradients" in c)
    out = run_alone(code, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.split()[-1]) < 1e-6


def test_an_unseeded_snippet_would_be_caught(tmp_path):
    """The check above can fail: a snippet drawing from np.random's global state prints anew each run."""
    code = "import numpy as np\nprint(np.random.rand())\n"
    assert run_alone(code, tmp_path).stdout != run_alone(code, tmp_path).stdout
