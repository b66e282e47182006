"""Time per epoch of AmortizedVAE against the same VAE written in torch (CPU).

Same data (standardised, dequantised digits), same networks (tanh MLPs,
encoder d-H-2q, decoder q-H-2d with a softplus-floored Gaussian variance),
same batch size, same Adam, float32, same number of epochs; both run in this
process on the same cores. Prints seconds per epoch and the ratio. Also prints
the held-out table of the issue: AmortizedVAE with defaults against the best
EMGaussianMixture and ProbabilisticPCA fitted on the same split.

torch is a benchmark dependency only:  python -m pip install torch==2.13.0

    python benchmarks/bench_vae.py [--epochs 30] [--hidden 128] [--batch-size 64]
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skem import AmortizedVAE, EMGaussianMixture, ProbabilisticPCA


def digits_split():
    pixels = load_digits().data
    X = pixels + np.random.RandomState(0).uniform(size=pixels.shape)
    return train_test_split(X, random_state=0)


def time_skem(X, args):
    vae = AmortizedVAE(args.latent, hidden_layer_sizes=(args.hidden,), batch_size=args.batch_size,
                       max_iter=args.epochs, n_iter_no_change=args.epochs + 1,
                       early_stopping=False, random_state=0)
    start = time.perf_counter()
    vae.fit(X)
    return (time.perf_counter() - start) / args.epochs


def time_torch(X, args):
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    n_features, latent, hidden = X.shape[1], args.latent, args.hidden
    data = torch.tensor((X - X.mean(0)) / X.std(0), dtype=torch.float32)
    encoder = nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
    decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, 2 * n_features))
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
    log_2pi = float(np.log(2 * np.pi))

    def epoch():
        for rows in torch.randperm(len(data)).split(args.batch_size):
            x = data[rows]
            mean, log_variance = encoder(x).chunk(2, dim=1)
            std = torch.exp(0.5 * log_variance)
            z = mean + std * torch.randn_like(std)
            x_mean, raw = decoder(z).chunk(2, dim=1)
            variance = 1e-3 + nn.functional.softplus(raw)
            reconstruction = -0.5 * (log_2pi + variance.log() + (x - x_mean) ** 2 / variance).sum(1)
            kl = 0.5 * (mean**2 + std**2 - 1 - log_variance).sum(1)
            loss = -(reconstruction - kl).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch()  # warm-up
    start = time.perf_counter()
    for _ in range(args.epochs):
        epoch()
    return (time.perf_counter() - start) / args.epochs


def held_out_table(X_train, X_test):
    warnings.simplefilter("ignore", ConvergenceWarning)
    rows = []
    start = time.perf_counter()
    vae = AmortizedVAE(10, random_state=0).fit(X_train)
    rows.append(("AmortizedVAE(n_components=10), defaults", vae.score(X_test),
                 time.perf_counter() - start))
    for k in (10, 20, 50, 100):
        start = time.perf_counter()
        model = EMGaussianMixture(k, covariance_type="diag", random_state=0).fit(X_train)
        rows.append((f"EMGaussianMixture({k}, 'diag')", model.score(X_test),
                     time.perf_counter() - start))
    for k in (1, 3, 5):
        start = time.perf_counter()
        model = EMGaussianMixture(k, reg_covar=1e-2, random_state=0).fit(X_train)
        rows.append((f"EMGaussianMixture({k}, 'full', reg_covar=1e-2)", model.score(X_test),
                     time.perf_counter() - start))
    for q in (20, 40, 63):
        start = time.perf_counter()
        model = ProbabilisticPCA(q).fit(X_train)
        rows.append((f"ProbabilisticPCA({q})", model.score(X_test), time.perf_counter() - start))
    print(f"\nHeld-out mean log-likelihood on dequantised digits ({len(X_train)} training, "
          f"{len(X_test)} held-out images)")
    print(f"  {'model':<46} {'nats/image':>11} {'fit s':>7}")
    for name, score, seconds in rows:
        print(f"  {name:<46} {score:>11.2f} {seconds:>7.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--latent", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-table", action="store_true")
    args = parser.parse_args()
    X_train, X_test = digits_split()
    ours = time_skem(X_train, args)
    try:
        theirs = time_torch(X_train, args)
    except ImportError:
        theirs = None
    print(f"Seconds per epoch, {len(X_train)} rows, batch {args.batch_size}, "
          f"hidden {args.hidden}, latent {args.latent}, float32")
    print(f"  skem AmortizedVAE: {ours:.4f}")
    if theirs is None:
        print("  torch: not installed (python -m pip install torch==2.13.0)")
    else:
        print(f"  torch:             {theirs:.4f}")
        print(f"  ratio skem / torch: {ours / theirs:.2f}")
    if not args.skip_table:
        held_out_table(X_train, X_test)


if __name__ == "__main__":
    main()
