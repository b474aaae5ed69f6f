"""docs/python.md's snippets run as printed: in order, each in a fresh interpreter, from one folder
(the first trains, the others read its files), twice with the same output."""
from pathlib import Path

import pytest

from test_readme import SNIPPET, run_alone

ROOT = Path(__file__).resolve().parents[1]


def page_snippets():
    return SNIPPET.findall((ROOT / "docs" / "python.md").read_text(encoding="utf-8"))


def run_in_order(folder):
    folder.mkdir()
    outputs = []
    for code in page_snippets():
        out = run_alone(code, folder)
        assert out.returncode == 0, out.stderr[-2000:]
        outputs.append(out.stdout)
    return outputs


def test_the_page_covers_the_five_tasks():
    text = "\n".join(page_snippets())
    for name in ("fit(", "metrics.json", "load_checkpoint(", "decode_mean(", "iw_log_px("):
        assert name in text, name


@pytest.mark.filterwarnings("ignore")
def test_the_python_page_runs_in_order_and_prints_the_same_twice(tmp_path):
    first, second = run_in_order(tmp_path / "a"), run_in_order(tmp_path / "b")
    assert all(out.strip() for out in first), first
    assert first == second, "a snippet is not seeded: its output changed"
    assert "nats per image" in first[0] and "log p(x) ~ -" in first[-1]
