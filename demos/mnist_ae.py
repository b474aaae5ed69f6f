"""The autoencoder family side by side: a plain AE, a denoising AE and a VAE, trained alike on MNIST.

    python demos/mnist_ae.py                                       # 784-400-2, masking 0.3, 10 epochs
    python demos/mnist_ae.py --corruption gaussian --corruption-level 0.5
    python demos/mnist_ae.py --latent-dim 20 --out runs/family-z20

The three models have the same encoder and decoder shapes (784-400-L-400-784,
ReLU; the VAE's encoder ends in 2L numbers, mu and logvar, instead of L), the
same Bernoulli likelihood and are trained the same way (train.fit: Adam, the
same epochs, batch size, learning rate and seed). The denoising autoencoder
(DAE) sees each training digit corrupted afresh every epoch (--corruption)
and is scored against the clean digit.

The table: each model's test reconstruction error in nats per image under the
Bernoulli likelihood, -log p(x | x_in) summed over the 784 pixels, for the clean
test digits and for a corrupted copy (one fixed draw of the same corruption),
always scored against the clean digit. For the VAE: the reconstruction term at
z ~ q(z | x_in) (its ELBO's term), at z = the mean of q, and the -ELBO.

Written to --out:

    ae/, dae/, vae/          each model's checkpoint.npz and metrics.json (train.fit)
    metrics.json             the table, each model's settings and final test numbers, seconds
    reconstructions.png      clean and corrupted test digits and each model's reconstruction
    samples.png              the same z ~ N(0, I) decoded by each model
    latent_scatters.png      the test digits' codes (AE, DAE) and means of q(z|x) (VAE)

Errors the user can fix are one line on stderr, exit status 2; Ctrl-C is one
line saying what is saved, exit status 130 (demos/common.py).
Explained, with the pictures of a 10-epoch run: docs/autoencoders.md
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

# common first: it puts this checkout's tinyvae first on sys.path (demos/common.py)
from common import (add_common_flags, add_size_flags, main_wrapper, one_line_parser, positive_float,
                    start_run, train_config_kwargs)
from tinyvae import ae, plots, vae
from tinyvae.ae import AEConfig
from tinyvae.checkpoint import METRICS_FILE, write_json
from tinyvae.distributions import kl_normal_forward, reparameterize_forward
from tinyvae.layers import sigmoid
from tinyvae.train import STREAM_PICTURES, Interrupted, TrainConfig, fit
from tinyvae.vae import VAEConfig

MODELS = {"ae": "AE", "dae": "DAE", "vae": "VAE"}   # folder under --out: label
DEFAULT_LEVEL = {"mask": 0.3, "gaussian": 0.5}     # the levels used in teaching
STREAM_TEST_CORRUPTION = 10   # the one fixed corruption of the test set
STREAM_TABLE = 11             # the VAE's z ~ q(z | x_in) in the table
EVAL_BATCH = 1000
N_SHOWN = 12                  # test digits in reconstructions.png
N_SAMPLES = 24                # prior samples per model, two rows
PICTURES = ("reconstructions.png", "samples.png", "latent_scatters.png")
OUTPUT_FILES = (METRICS_FILE, *PICTURES)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser():
    p = one_line_parser(
        "demos/mnist_ae.py",
        "Train a plain autoencoder, a denoising autoencoder and a VAE of the same shape on MNIST, "
        "the same way, and compare their reconstructions, samples and latent spaces.")
    add_common_flags(p, out="runs/family")
    add_size_flags(p, 2, "code size of the autoencoders and latent size of the VAE "
                         "(2, a plane: the scatters show the codes themselves)", models="every model")
    p.add_argument("--corruption", choices=("mask", "gaussian"), default="mask",
                   help="the DAE's corruption, and the test set's: mask (each pixel zeroed with "
                        "probability p) or gaussian (noise of std sigma, clipped to [0, 1]); "
                        "default %(default)s")
    p.add_argument("--corruption-level", type=positive_float, default=None, metavar="P",
                   help="p for mask (below 1), sigma for gaussian; default 0.3 for mask, 0.5 for gaussian")
    return p


def configs_from_args(args):
    """({'ae': AEConfig, 'dae': AEConfig, 'vae': VAEConfig}, TrainConfig): one shape, one training."""
    level = args.corruption_level if args.corruption_level is not None else DEFAULT_LEVEL[args.corruption]
    shape = dict(input_dim=784, enc_hidden=tuple(args.hidden), dec_hidden=tuple(reversed(args.hidden)),
                 latent_dim=args.latent_dim, activation="relu", likelihood="bernoulli", init="pytorch")
    configs = {"ae": AEConfig(**shape),
               "dae": AEConfig(**shape, corruption=args.corruption, corruption_level=level),
               "vae": VAEConfig(**shape)}
    return configs, TrainConfig(**train_config_kwargs(args), iw_k=0)


# ---------------------------------------------------------------------------
# The table: reconstruction error of clean and corrupted test digits, nats per image
# ---------------------------------------------------------------------------


def reconstruction_table(params, configs, x, x_noisy, backend) -> dict:
    """{row: {"clean": nats, "corrupted": nats}}, means over the test images.

    Every number is -log p(x | ...) under the Bernoulli likelihood against the
    clean x (N, 784), from the clean input x or the corrupted x_noisy:
    ae, dae: -log p(x | dec(enc(x_in))); vae_recon: -log p(x | z), z ~ q(z | x_in)
    (one draw per image, fixed stream); vae_recon_at_mean: z = mu(x_in);
    vae_neg_elbo: vae_recon + KL(q(z | x_in) || N(0, I)).
    """
    xp = backend.xp
    cv = configs["vae"]
    sums = {}

    def add(row, column, terms):                                   # terms (B,)
        key = (row, column)
        sums[key] = sums.get(key, 0.0) + float(xp.sum(terms))

    backend.reseed(STREAM_TABLE)
    n = x.shape[0]
    for start in range(0, n, EVAL_BATCH):
        xb = x[start:start + EVAL_BATCH, :]                                    # (B, 784)
        eps = backend.normal((xb.shape[0], cv.latent_dim))                     # (B, L), both columns
        for column, x_in in (("clean", xb), ("corrupted", x_noisy[start:start + EVAL_BATCH, :])):
            for name in ("ae", "dae"):
                add(name, column, ae.recon_terms(params[name], x_in, xb, configs[name]))
            p = params["vae"]
            mu, logvar = vae.encode(p, x_in, cv)                                # (B, L) each
            z, _ = reparameterize_forward(mu, logvar, eps)
            recon = vae.recon_nll(p, vae.decode(p, z, cv), xb, cv)              # (B,)
            add("vae_recon", column, recon)
            add("vae_recon_at_mean", column, vae.recon_nll(p, vae.decode(p, mu, cv), xb, cv))
            add("vae_neg_elbo", column, recon + kl_normal_forward(mu, logvar)[0])
    rows = ("ae", "dae", "vae_recon", "vae_recon_at_mean", "vae_neg_elbo")
    return {r: {c: sums[(r, c)] / n for c in ("clean", "corrupted")} for r in rows}


ROW_LABELS = {
    "ae": "AE: -log p(x \\| dec(enc(x_in)))",
    "dae": "DAE: -log p(x \\| dec(enc(x_in)))",
    "vae_recon": "VAE: -log p(x \\| z), z ~ q(z \\| x_in)",
    "vae_recon_at_mean": "VAE: -log p(x \\| z), z = mean of q(z \\| x_in)",
    "vae_neg_elbo": "VAE: -ELBO = -log p(x \\| z), z ~ q, + KL",
}   # "\\|" is a "|" inside a Markdown table cell


def table_markdown(table: dict, corruption: str) -> str:
    """The table as Markdown, nats per image, one row per model and term."""
    lines = [f"| test reconstruction error (nats per image) | clean input | corrupted input ({corruption}) |",
             "|---|---:|---:|"]
    lines += [f"| {ROW_LABELS[r]} | {v['clean']:.2f} | {v['corrupted']:.2f} |" for r, v in table.items()]
    return "\n".join(lines)


def corruption_name(config: AEConfig) -> str:
    return (f"masking, p = {config.corruption_level:g}" if config.corruption == "mask"
            else f"Gaussian, sigma = {config.corruption_level:g}")


# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------


def codes(params, configs, name, x_in):
    """The AE's code h = enc(x_in), or the mean of the VAE's q(z | x_in): (B, 784) -> (B, L)."""
    if name == "vae":
        return vae.encode(params[name], x_in, configs[name])[0]
    return ae.encode(params[name], x_in, configs[name])


def code_spread(z) -> dict:
    """Where a model puts the test digits, against N(0, I): each dimension's mean and standard
    deviation, and (L = 2) the share of them inside the circle holding 95% of N(0, I)."""
    z = np.asarray(z, dtype=np.float64)                                     # (N, L)
    inside = float(np.mean(np.hypot(z[:, 0], z[:, 1]) < plots.PRIOR_95_RADIUS)) if z.shape[1] == 2 else None
    return {"mean": z.mean(axis=0).tolist(), "std": z.std(axis=0).tolist(), "inside_prior_95": inside}


def write_pictures(params, configs, backend, x, x_noisy, y_test, test_codes, out: Path) -> list:
    """reconstructions.png, samples.png, latent_scatters.png. x, x_noisy (M, 784) on the backend;
    test_codes {name: host (M, L)}."""
    to_np = backend.to_numpy
    cv = configs["vae"]

    def decoded(name, z):                        # pixel probabilities sigma(logits), (M, 784)
        if name == "vae":
            return to_np(vae.decode_mean(params[name], z, cv))
        return to_np(sigmoid(ae.decode(params[name], z, configs[name])))

    rows = []
    for column, x_in in (("test digits", x[:N_SHOWN, :]),
                         (f"corrupted\n({corruption_name(configs['dae'])})", x_noisy[:N_SHOWN, :])):
        rows.append((column, to_np(x_in)))
        rows += [(f"{label}\nreconstruction", decoded(name, codes(params, configs, name, x_in)))
                 for name, label in MODELS.items()]
    plots.image_rows(rows, out / "reconstructions.png",
                     "Clean and corrupted test digits, and each model's reconstruction")

    backend.reseed(STREAM_PICTURES)
    z = backend.normal((N_SAMPLES, cv.latent_dim))               # the same z for every model, (24, L)
    half = N_SAMPLES // 2
    rows = []
    for name, label in MODELS.items():
        images = decoded(name, z)
        rows += [(f"{label}\nz ~ N(0, I)", images[:half]), ("", images[half:])]
    plots.image_rows(rows, out / "samples.png", "The same z ~ N(0, I) decoded by each model")

    panels = {f"{label}: {'means of q(z|x)' if name == 'vae' else 'codes h = enc(x)'}": test_codes[name]
              for name, label in MODELS.items()}
    plots.latent_scatters(panels, y_test, out / "latent_scatters.png",
                          title="The same test digits in each model's latent space")
    return list(PICTURES)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def print_epoch(record: dict):
    """One line per epoch: the VAE's -ELBO (recon + KL), or the autoencoder's reconstruction term."""
    if "test_neg_elbo" in record:
        numbers = (f"train -ELBO {record['train_neg_elbo']:8.2f}  test -ELBO {record['test_neg_elbo']:8.2f} "
                   f"= {record['test_recon']:7.2f} recon + {record['test_kl']:6.2f} KL")
    else:
        numbers = f"train recon {record['train_recon']:8.2f}  test recon {record['test_recon']:8.2f}"
    tqdm.write(f"epoch {record['epoch']:3d}  {numbers}  (nats/image)  {record['seconds']:6.1f} s")


def run(args) -> int:
    configs, tconfig = configs_from_args(args)
    backend, out, (x_train, _, x_test, y_test) = start_run(args, configs.values(), tconfig, OUTPUT_FILES)
    dae = configs["dae"]
    print(f"AE, DAE ({corruption_name(dae)}) and VAE on MNIST: {x_train.shape[0]} train / "
          f"{x_test.shape[0]} test images, 784-{'-'.join(map(str, dae.enc_hidden))}-{dae.latent_dim}, "
          f"backend {backend.name}, out {out}", flush=True)
    t0 = time.perf_counter()
    params, finals, seconds = {}, {}, {}
    for name, label in MODELS.items():
        print(f"{label}:", flush=True)
        t = time.perf_counter()
        result = fit(x_train, x_test, configs[name], tconfig, backend, out / name, resume=args.resume,
                     overwrite=args.overwrite, on_epoch=print_epoch)
        params[name], seconds[name] = result.params, time.perf_counter() - t
        finals[name] = {k: v for k, v in result.metrics.items() if k.startswith("test_")}
    try:
        x = backend.asarray(x_test)                                          # (M, 784)
        backend.reseed(STREAM_TEST_CORRUPTION)
        x_noisy = ae.corrupt(x, backend, dae)                                # one fixed draw
        table = reconstruction_table(params, configs, x, x_noisy, backend)
        print(table_markdown(table, corruption_name(dae)))
        test_codes = {name: np.concatenate([backend.to_numpy(codes(params, configs, name, x[s:s + EVAL_BATCH, :]))
                                            for s in range(0, x.shape[0], EVAL_BATCH)])
                      for name in MODELS}                                     # {name: (M, L)}
        spread = {name: code_spread(z) for name, z in test_codes.items()}
        for name, sp in spread.items():
            inside = "" if sp["inside_prior_95"] is None else \
                f", {sp['inside_prior_95']:.0%} inside the circle holding 95% of N(0, I)"
            print(f"{MODELS[name]} test codes: std per dimension "
                  + " ".join(f"{v:.2f}" for v in sp["std"][:4]) + ("..." if len(sp["std"]) > 4 else "") + inside)
        pictures = write_pictures(params, configs, backend, x, x_noisy, y_test, test_codes, out)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted after training: the three models are saved under {out} "
                          "(ae/, dae/, vae/); --resume makes the table and pictures again") from None
    seconds["total"] = time.perf_counter() - t0
    write_json(out / METRICS_FILE, {
        "configs": {name: c.to_dict() for name, c in configs.items()},
        "train_config": tconfig.to_dict(), "backend": backend.name, "dtype": backend.dtype_name,
        "data": {"n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0])},
        "corruption": {"kind": dae.corruption, "level": dae.corruption_level,
                       "test_stream": STREAM_TEST_CORRUPTION},
        "table": table, "code_spread": spread, "final": finals, "seconds": seconds})
    print(f"wrote {out}/: ae/, dae/, vae/, {METRICS_FILE}, " + ", ".join(pictures)
          + f"  ({seconds['total']:.0f} s)")
    return 0


main = main_wrapper(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
