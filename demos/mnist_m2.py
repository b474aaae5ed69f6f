"""Semi-supervised MNIST with M2 (Kingma et al. 2014): learn to classify digits from 100 labels.

    python demos/mnist_m2.py --labels 100                 # 10 labelled images per digit
    python demos/mnist_m2.py --labels 1000 --seed 1 --out runs/m2_1000_s1   # another count, another draw
    python demos/mnist_m2.py --labels 100 --epochs 60 --resume   # continue the first run from its checkpoint
    python demos/mnist_m2.py --labels 100 --balance 10 --out runs/m2_100_b10   # every digit used equally often

The labelled images are drawn from the training set, the same number of each
digit, by a NumPy generator seeded with --seed (tinyvae.data.labelled_subset);
every other training image is used without its label. The model is the
paper's: classifier q(y|x), encoder q(z|x,y) and decoder p(x|y,z), each one
hidden layer of 500 softplus units, 50 latent dimensions (tinyvae/core/m2.py).

Per epoch it prints the training loss and its labelled cross-entropy, the test
classification error (the classifier's most probable digit) and the test
-ELBO with the label unobserved, in nats per image, and the seconds the epoch
took. Written to --out:

    checkpoint.npz, metrics.json   as every demo writes them; metrics.json also holds
                                   "labelled" (the indices drawn, their SHA-256 and
                                   per-digit counts) and the test "confusion_matrix"
    class_samples.png              a row per digit: p(x | y, z) for the same z ~ N(0, I) in every row
    confusion_matrix.png           true digit by predicted digit, on the test set
    curves.png                     test error and test -ELBO per epoch

Errors the user can fix are one line on stderr, exit status 2; Ctrl-C is one
line saying which epochs are saved, exit status 130 (demos/common.py).
The objective, alpha and the results: docs/semi_supervised.md
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, check_fits, drawing_pictures, flag, from_flags, main_wrapper, one_line_parser,
                    say_wrote, start_run, train_config)
from measures import K, confusion, largest_balanced, predict
from tinyvae import plots
from tinyvae.checkpoint import CHECKPOINT_FILE, METRICS_FILE, write_json
from tinyvae.checks import Int
from tinyvae.core.layers import one_hot
from tinyvae.core.m2 import M2Config
from tinyvae.core.vae import decode_mean
from tinyvae.data import SPLITS, labelled_subset
from tinyvae.errors import InputError
from tinyvae.train import STREAM_PICTURES, fit

STREAM_LABELS = 10           # the labelled subset is drawn by default_rng([STREAM_LABELS, seed])
N_SAMPLES = 10               # samples per digit in class_samples.png
# Kingma et al. (2014), Table 1, M2 test error in % by number of labels: the dashed line in curves.png
PAPER_M2 = {100: 11.97, 600: 4.94, 1000: 3.60, 3000: 3.92}
PICTURES = ("class_samples.png", "confusion_matrix.png", "curves.png")
OUTPUT_FILES = (CHECKPOINT_FILE, METRICS_FILE, *PICTURES)   # --out is checked for them before training


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser():
    p = one_line_parser(
        "demos/mnist_m2.py",
        "Train M2, the semi-supervised VAE, on MNIST with a few labelled images (the same number "
        "of each digit) and the rest unlabelled; report the test classification error. Defaults: "
        "the paper's networks (one hidden layer of 500 softplus units, 50 latent dimensions).")
    add_common_flags(p, out="runs/mnist_m2", epochs=30, batch_size=100, lr=1e-3)
    flag(p, "--labels", rule=Int(K), default=100, metavar="N",
         help="labelled training images, a multiple of 10 (N/10 of each digit), drawn "
              "with --seed; the paper reports 100, 600, 1000 and 3000; default %(default)s")
    flag(p, "--alpha", M2Config, "alpha", default=None, metavar="A",
         help="weight of the labelled cross-entropy, per labelled image (the losses are "
              "means); default the paper's 0.1 N rescaled to means, 0.1 N / N_unlabelled "
              "(about 0.1), see docs/semi_supervised.md#alpha")
    flag(p, "--balance", M2Config, "balance", default=0.0, metavar="B",
         help="weight of KL(mean q(y | x) over a step's unlabelled images || uniform), which "
              "asks the classifier to use every digit equally often; 0 (default) is the "
              "paper's M2; 10 keeps the 5s from merging into the 3s with 100 labels, see "
              "docs/semi_supervised.md#class-balance")
    flag(p, "--latent-dim", M2Config, "latent_dim", default=50, metavar="L", help="default %(default)s")
    flag(p, "--hidden", rule=Int(1), also=("enc_hidden", "dec_hidden", "cls_hidden"), default=500, metavar="H",
         help="units in the one hidden layer of each network; default %(default)s")
    return p


def default_alpha(n_labelled: int, n_unlabelled: int) -> float:
    """0.1 N / N_u, N = N_l + N_u: the paper's alpha = 0.1 N rescaled to our means (docs/semi_supervised.md#alpha)."""
    return 0.1 * (n_labelled + n_unlabelled) / n_unlabelled


@from_flags
def configs_from_args(args, n_labelled: int, n_unlabelled: int):
    """(M2Config, TrainConfig) from the parsed flags and the sizes of the two sets."""
    alpha = default_alpha(n_labelled, n_unlabelled) if args.alpha is None else args.alpha
    h = (args.hidden,)
    config = M2Config(input_dim=784, enc_hidden=h, dec_hidden=h, cls_hidden=h, latent_dim=args.latent_dim,
                      activation="softplus", likelihood="bernoulli", n_classes=K, alpha=alpha,
                      balance=args.balance)
    return config, train_config(args, iw_k=0)      # continuous pixels in [0, 1]


def split_labelled(y_train, labels: int, seed: int):
    """(labelled indices, unlabelled indices): labels/10 of each digit drawn with `seed`, and the rest.

    A count the data cannot give is refused, naming the largest one it can
    (measures.largest_balanced: every digit as often, some images left unlabelled).
    """
    counts, most = np.bincount(y_train, minlength=K), largest_balanced(y_train)
    small = int(counts.argmin())
    more = " (or a larger --limit)" if len(y_train) < SPLITS["train"].n else ""
    allowed = (f"pass at most --labels {most}{more}" if most else
               "no --labels leaves images unlabelled here: use a larger --limit")
    if labels % K:
        suggest = min(labels - labels % K, most)
        raise InputError(f"--labels {labels} is not a multiple of {K}: pass the same number of each digit, "
                         + (f"e.g. --labels {suggest}" + (" (the most this data allows: class "
                            f"{small} has {counts[small]:,} images, and some must stay unlabelled)"
                            if suggest == most else "") if suggest else allowed))
    if labels // K > counts[small]:
        raise InputError(f"--labels {labels} asks for {labels // K:,} of each digit but class {small} "
                         f"has only {counts[small]:,} images: {allowed}")
    chosen = labelled_subset(y_train, labels // K, np.random.default_rng([STREAM_LABELS, seed]))
    rest = np.setdiff1d(np.arange(len(y_train)), chosen)
    if len(rest) == 0:
        raise InputError(f"all {len(y_train)} training images are labelled: M2 needs unlabelled ones too; {allowed}")
    return chosen, rest


def labelled_record(chosen, y_train, seed: int) -> dict:
    """What metrics.json records of the labelled set: how it was drawn, its indices, their hash, per-digit counts."""
    return {"n": int(len(chosen)), "seed": seed, "stream": [STREAM_LABELS, seed],
            "indices_sha256": hashlib.sha256(np.asarray(chosen, dtype="<i8").tobytes()).hexdigest(),
            "per_class": np.bincount(y_train[chosen], minlength=K).tolist(),
            "indices": [int(i) for i in chosen]}


# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------


def write_pictures(params, config, backend, counts, epochs, out: Path, labels: int) -> list:
    """class_samples.png (a row per digit, the same z down each column), confusion_matrix.png, curves.png."""
    backend.reseed(STREAM_PICTURES)
    z = backend.normal((N_SAMPLES, config.latent_dim))                        # (S, L), shared by the rows
    xp = backend.xp
    rows = []
    for k in range(K):
        y = one_hot(xp.full((N_SAMPLES,), k, dtype=xp.int64), K, like=z)      # (S, K)
        rows.append((str(k), backend.to_numpy(decode_mean(params, z, config, y))))
    written = [plots.image_rows(rows, out / "class_samples.png",
                                "p(x | y, z): a row per digit y, the same z down each column")]
    written.append(plots.confusion_matrix(counts, out / "confusion_matrix.png", title="Test set"))
    paper = PAPER_M2.get(labels)
    written.append(plots.m2_curves(epochs, out / "curves.png",
                                   reference=None if paper is None else (paper, f"paper's M2, {labels} labels")))
    return [Path(p) for p in written]


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def print_epoch(record: dict):
    """One line per epoch: train loss, cross-entropy and class KL, test error and -ELBO, seconds."""
    tqdm.write(f"epoch {record['epoch']:3d}  train loss {record['train_loss']:8.2f} "
               f"(labelled CE {record['train_ce']:.3f}, class KL {record['train_class_kl']:.3f})  "
               f"test error {100 * record['test_error']:6.2f}%  "
               f"test -ELBO {record['test_neg_elbo']:7.2f} nats/image  {record['seconds']:6.1f} s "
               f"(+{record['eval_seconds']:.1f} s test)")


def run(args) -> int:
    backend, _, (x_train, y_train, x_test, y_test) = start_run(args, (), None, OUTPUT_FILES)
    chosen, rest = split_labelled(y_train, args.labels, args.seed)
    config, tconfig = configs_from_args(args, len(chosen), len(rest))
    check_fits(args, [config], tconfig, backend, n_images=max(len(rest), len(chosen), len(x_test)))
    record = labelled_record(chosen, y_train, args.seed)
    print(f"M2 on MNIST: {len(chosen)} labelled ({record['per_class'][0]} per digit, seed {args.seed}, "
          f"sha256 {record['indices_sha256'][:12]}) + {len(rest)} unlabelled / {len(x_test)} test images, "
          f"784-{args.hidden}-{config.latent_dim}, alpha {config.alpha:g}, balance {config.balance:g}"
          f", backend {backend.name}, out {args.out}", flush=True)
    result = fit(x_train[rest], x_test, config, tconfig, backend, args.out, y_test=y_test,
                 labelled=(x_train[chosen], y_train[chosen]), resume=args.resume,
                 overwrite=args.overwrite, on_epoch=print_epoch)
    m = result.metrics
    counts = confusion(y_test, predict(result.params, config, backend, x_test))
    m.update(labelled=record, confusion_matrix=counts.tolist(),
             seconds=sum(e["seconds"] + e["eval_seconds"] for e in m["epochs"]))
    write_json(Path(args.out) / METRICS_FILE, m)
    print(f"test error {100 * m['test_error']:.2f}% after {len(m['epochs'])} epochs "
          f"({int(counts.sum() - np.trace(counts))} of {int(counts.sum())} test digits), "
          f"test -ELBO {m['test_neg_elbo']:.2f} nats/image, {m['seconds'] / 60:.1f} min in all")
    with drawing_pictures(args.out, len(m["epochs"])):
        pictures = write_pictures(result.params, config, backend, counts, m["epochs"], Path(args.out), args.labels)
    say_wrote(args.out, [CHECKPOINT_FILE, METRICS_FILE, *(p.name for p in pictures)])
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
