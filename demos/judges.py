"""How much a classifier score depends on the judge: the same samples scored by judges that trained
for different numbers of epochs.

    python demos/judges.py --runs runs/gan-dcgan runs/gan --judge-epochs 3 10 --out runs/judges

Each judge is tinyvae's MNIST classifier (the network of tinyvae/judge.py)
trained for E epochs on the training images, kept as --out/judge-E/checkpoint.npz
and reused from there; the 3-epoch judge is the one every demo uses. Each run
(a folder of demos/mnist_gan.py, or the gan/ of demos/mnist_compare.py) draws
--samples images from the same z as demos/mnist_gan.py judges; the MNIST test
images are scored as a row of their own. Printed: a table with each judge's
test accuracy, and per row and judge the classifier score, the Frechet
distance and the rarest digit's share; written: --out/metrics.json. Nothing
in the runs' folders is written.
Explained: docs/gan.md#how-much-the-score-depends-on-the-judge
"""
from __future__ import annotations

import sys
from pathlib import Path

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import claim_out, main_wrapper, mnist, one_line_parser, flag, out_dir, saved_checkpoint, say_wrote
from mnist_gan import judged_row, judged_samples

from tinyvae import judge as J
from tinyvae.backend import get_backend
from tinyvae.checkpoint import METRICS_FILE, write_json
from tinyvae.checks import Int
from tinyvae.gan_train import load_gan


def build_parser():
    p = one_line_parser("demos/judges.py", "Score the same GAN samples (and the MNIST test images) with "
                        "judges trained for different numbers of epochs.")
    p.add_argument("--runs", type=Path, nargs="+", required=True, metavar="DIR",
                   help="folders of GAN runs (demos/mnist_gan.py, or demos/mnist_compare.py's, whose gan/ is read)")
    flag(p, "--judge-epochs", rule=Int(1), nargs="+", default=[J.EPOCHS, 10], metavar="E",
         help="each judge's training epochs; default %(default)s (3: the demos' judge)")
    flag(p, "--samples", rule=Int(1), default=10000, metavar="N", help="samples per run; default %(default)s")
    p.add_argument("--out", type=out_dir, default=Path("runs/judges"), metavar="DIR",
                   help="folder for the judges (judge-E/) and metrics.json; default %(default)s")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy", help="default %(default)s")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="folder holding the four MNIST IDX files; without it: the cache, then a download")
    p.add_argument("--overwrite", action="store_true", help="replace --out's metrics.json")
    return p


def run(args) -> int:
    args.limit = None                                       # what common.mnist reads: every image
    backend = get_backend(args.backend, seed=0)            # the judges' seed, as the demos' judge
    paths = [saved_checkpoint(run, "gan") for run in args.runs]  # every run found before anything is trained
    out = claim_out(args, args.out, (METRICS_FILE,))
    data = mnist(args)
    rows = {"MNIST test images": data[2]}
    for run, path in zip(args.runs, paths):                 # each run's samples, drawn as mnist_gan.py judges them
        rows[str(run)] = judged_samples(*load_gan(path, backend)[:2], args.samples, backend)
    judges, table = {}, {name: {} for name in rows}
    for epochs in dict.fromkeys(args.judge_epochs):
        params, config, meta = judge = J.judge(backend, data, out / f"judge-{epochs}" / "checkpoint.npz",
                                               epochs=epochs)
        judges[epochs] = meta["test_accuracy"]
        test_features = J.features(params, config, data[2], backend)
        for name, images in rows.items():
            table[name][epochs] = judged_row(images, judge, test_features, backend)
    head = " | ".join(f"judge {e} epochs ({a:.2%} right): score, Frechet, rarest" for e, a in judges.items())
    print(f"| images | {head} |\n|---|" + "---|" * len(judges))
    for name, by_judge in table.items():
        cells = " | ".join(f"{r['classifier_score']:.2f}, {max(r['frechet'], 0.0):.2f}, {r['rarest_digit']:.1%}"
                           for r in by_judge.values())
        print(f"| {name} | {cells} |")
    write_json(out / METRICS_FILE, {"samples": args.samples, "judge_test_accuracy": judges,
                                    "rows": {n: {str(e): r for e, r in t.items()} for n, t in table.items()}})
    say_wrote(out, [METRICS_FILE] + [f"judge-{e}/" for e in judges])
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
