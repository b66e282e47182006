"""Time per epoch of AmortizedVAE against the same VAE written in torch (CPU).

Same data (standardised, dequantised digits), same networks (tanh MLPs,
encoder d-H-2q, decoder q-H-2d with a softplus-floored Gaussian variance),
same batch size, same Adam (learning rate 3e-3, skem's default), float32,
same number of epochs, on the same cores. skem runs at its defaults
otherwise, so its epoch includes the moving average of the iterates
(``average_decay``), one update of the parameters per step that the torch
loop does not make. For each thread count, a fresh process (numpy's OpenBLAS
fixes its threads when it is loaded) sets OPENBLAS_NUM_THREADS and
torch.set_num_threads to it and times both configurations, alternating skem
and torch repeat by repeat; it prints medians and the ratio skem / torch of
each repeat's pair (median, and the range over repeats, which shows how
noisy the machine was). skem trains on one BLAS thread whatever the setting
(``fit`` limits BLAS to one thread during training: a minibatch's products
are too small to share out), so the thread count changes torch's time, not
skem's. Then it prints the held-out table of the issue: AmortizedVAE with
defaults against the best EMGaussianMixture and ProbabilisticPCA fitted on
the same split.

torch is a benchmark dependency only:  python -m pip install torch==2.13.0

    python benchmarks/bench_vae.py [--epochs 10] [--repeats 5] [--threads 1 2]
                                   [--config 128:64 --config 512:256] [--skip-table]
                                   [--training-samples 5]   # the IWAE objective

RESULTS
-------
Measured 2026-12-07 on AMD EPYC (/proc/cpuinfo model name "AMD EPYC"), 2
cores shared with other jobs (load average 3.3 to 5.5 during the runs),
numpy 2.4.6 with its OpenBLAS, torch 2.13.0+cpu; skem as committed in
87a4e28 (then c23e03d plus the working tree). Commands, from ``benchmarks/``::

    python bench_vae.py                                        # ELBO (k=1), then the table
    python bench_vae.py --threads 2 1 --skip-table             # ELBO again
    python bench_vae.py --training-samples 5 --epochs 5 --skip-table   # IWAE, k=5

Ratio skem / torch of the time per epoch (median over 5 repeats, range over
the repeats; hidden width : batch size; latent 10, 1347 rows)::

    objective   threads  128:64               512:256
    ELBO        1        0.28 [0.27, 0.28]    0.55 [0.54, 0.57]
    ELBO        1        0.26 [0.22, 0.29]    0.56 [0.52, 0.61]    (second run)
    ELBO        2        0.03 [0.01, 0.05]    0.08 [0.05, 0.12]
    ELBO        2        0.02 [0.00, 0.08]    0.14 [0.06, 0.22]    (second run)
    IWAE k=5    1        0.38 [0.35, 0.45]    0.77 [0.64, 0.88]
    IWAE k=5    2        0.06 [0.00, 0.57]    0.13 [0.04, 0.23]

Seconds per epoch with one thread: skem 0.007-0.011 (128) and 0.018-0.025
(512) against torch 0.027-0.044 and 0.033-0.047 for the ELBO; skem 0.025 and
0.103 against torch 0.064 and 0.141 for IWAE. With two threads torch's epoch
took 0.26 to 0.97 s, 6 to 19 times its one-thread time: on two cores
already busy with other jobs its two threads slow it down (presumably by
waiting for each other), while skem trains on one BLAS thread in both
settings, so the two-thread ratios say more about the load than the code. Held out
(the table, dequantised digits in pixel units 0-17, 1347/450 split):
AmortizedVAE(n_components=10) -106.54 nats/image in 4.3 s, against
-116.05 for the best EMGaussianMixture (50, 'diag') and -132.05 for
ProbabilisticPCA(63).
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
from _machine import cpu_name
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skem import AmortizedVAE, EMGaussianMixture, ProbabilisticPCA
from skem.datasets import load_dequantized_digits

DEFAULT_CONFIGS = ("128:64", "512:256")  # hidden width : batch size


def digits_split():
    return train_test_split(load_dequantized_digits()[0], random_state=0)


def skem_timer(X, hidden, batch_size, latent, epochs, samples=1):
    def fit(n_epochs):
        vae = AmortizedVAE(
            latent,
            hidden_layer_sizes=(hidden,),
            n_training_samples=samples,
            batch_size=batch_size,
            max_iter=n_epochs,
            n_iter_no_change=n_epochs + 1,
            early_stopping=False,
            random_state=0,
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            vae.fit(X)
        return (time.perf_counter() - start) / n_epochs

    fit(1)  # warm-up
    return lambda: fit(epochs)


def torch_timer(X, hidden, batch_size, latent, epochs, samples=1):
    import torch
    from torch import nn

    torch.manual_seed(0)
    n_features = X.shape[1]
    data = torch.tensor((X - X.mean(0)) / X.std(0), dtype=torch.float32)
    encoder = nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
    decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, 2 * n_features))
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)
    log_2pi = float(np.log(2 * np.pi))

    def epoch():
        for rows in torch.randperm(len(data)).split(batch_size):
            x = data[rows]
            mean, log_variance = encoder(x).chunk(2, dim=1)
            std = torch.exp(0.5 * log_variance)
            if samples > 1:  # the importance-weighted bound of k draws per row
                noise = torch.randn(len(rows), samples, latent)
                z = mean[:, None] + std[:, None] * noise
                x_mean, raw = decoder(z).chunk(2, dim=2)
                variance = 1e-3 + nn.functional.softplus(raw)
                terms = log_2pi + variance.log() + (x[:, None] - x_mean) ** 2 / variance
                log_weight = -0.5 * terms.sum(2) - 0.5 * (z**2 - noise**2).sum(2)
                log_weight = log_weight + 0.5 * log_variance.sum(1, keepdim=True)
                bound = torch.logsumexp(log_weight, dim=1) - np.log(samples)
                loss = -bound.mean()
            else:
                z = mean + std * torch.randn_like(std)
                x_mean, raw = decoder(z).chunk(2, dim=1)
                variance = 1e-3 + nn.functional.softplus(raw)
                terms = log_2pi + variance.log() + (x - x_mean) ** 2 / variance
                reconstruction = -0.5 * terms.sum(1)
                kl = 0.5 * (mean**2 + std**2 - 1 - log_variance).sum(1)
                loss = -(reconstruction - kl).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def run():
        start = time.perf_counter()
        for _ in range(epochs):
            epoch()
        return (time.perf_counter() - start) / epochs

    epoch()  # warm-up
    return run


def blas_threads():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def worker(args):
    """Time every configuration with this process's threads; one JSON line each."""
    try:
        import torch
    except ImportError:
        torch = None
    else:
        torch.set_num_threads(args.threads)
    X_train, _ = digits_split()
    for config in args.config:
        hidden, batch_size = (int(value) for value in config.split(":"))
        sizes = (X_train, hidden, batch_size, args.latent, args.epochs, args.training_samples)
        timers = {"skem": skem_timer(*sizes)}
        if torch is not None:
            timers["torch"] = torch_timer(*sizes)
        seconds = {name: [] for name in timers}
        for repeat in range(args.repeats):
            names = list(timers) if repeat % 2 == 0 else list(timers)[::-1]
            for name in names:  # alternate which goes first
                seconds[name].append(timers[name]())
        print(
            json.dumps(
                {
                    "threads": args.threads,
                    "hidden": hidden,
                    "batch_size": batch_size,
                    "blas_threads": blas_threads(),
                    "seconds": seconds,
                }
            ),
            flush=True,
        )


def run_workers(args):
    results = []
    for threads in args.threads:
        environment = dict(
            os.environ,
            OPENBLAS_NUM_THREADS=str(threads),
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
        )
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            "--threads",
            str(threads),
            "--epochs",
            str(args.epochs),
            "--repeats",
            str(args.repeats),
            "--latent",
            str(args.latent),
            "--training-samples",
            str(args.training_samples),
        ]
        for config in args.config:
            command += ["--config", config]
        process = subprocess.run(command, env=environment, capture_output=True, text=True)
        if process.returncode:
            sys.stderr.write(process.stderr)
            raise SystemExit(f"the timing process with {threads} threads failed")
        results += [
            json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")
        ]
    return results


def print_timings(results, args, n_rows, load_before, load_after):
    print(
        f"Seconds per epoch, {n_rows} rows, latent {args.latent}, "
        f"{args.training_samples} draw(s) per row, float32, {args.epochs} epochs "
        f"per timing, median of {args.repeats} repeats alternating skem and torch"
    )
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (other work on the machine "
        "makes the timings noisy)"
    )
    print(
        f"  {'threads':>7} {'hidden':>6} {'batch':>5} {'skem':>8} {'torch':>8} "
        f"{'ratio':>6}  {'ratio range':>11}  {'skem range':>15}"
    )
    for result in results:
        skem = np.array(result["seconds"]["skem"])
        torch = result["seconds"].get("torch")
        line = (
            f"  {result['threads']:>7} {result['hidden']:>6} {result['batch_size']:>5} "
            f"{np.median(skem):>8.4f} "
        )
        if torch is None:
            line += "   torch not installed (python -m pip install torch==2.13.0)"
        else:
            torch = np.array(torch)
            ratios = skem / torch  # each repeat's pair ran back to back
            line += (
                f"{np.median(torch):>8.4f} {np.median(ratios):>6.2f}  "
                f"[{ratios.min():.2f}, {ratios.max():.2f}]  "
                f"[{skem.min():.4f}, {skem.max():.4f}]"
            )
        if result["blas_threads"] and set(result["blas_threads"]) != {result["threads"]}:
            line += f"  (numpy BLAS threads: {result['blas_threads']})"
        print(line)


def held_out_table(X_train, X_test):
    warnings.simplefilter("ignore", ConvergenceWarning)
    rows = []
    start = time.perf_counter()
    vae = AmortizedVAE(10, random_state=0).fit(X_train)
    rows.append(
        ("AmortizedVAE(n_components=10), defaults", vae.score(X_test), time.perf_counter() - start)
    )
    for k in (10, 20, 50, 100):
        start = time.perf_counter()
        model = EMGaussianMixture(k, covariance_type="diag", random_state=0).fit(X_train)
        rows.append(
            (f"EMGaussianMixture({k}, 'diag')", model.score(X_test), time.perf_counter() - start)
        )
    for k in (1, 3, 5):
        start = time.perf_counter()
        model = EMGaussianMixture(k, reg_covar=1e-2, random_state=0).fit(X_train)
        rows.append(
            (
                f"EMGaussianMixture({k}, 'full', reg_covar=1e-2)",
                model.score(X_test),
                time.perf_counter() - start,
            )
        )
    for q in (20, 40, 63):
        start = time.perf_counter()
        model = ProbabilisticPCA(q).fit(X_train)
        rows.append((f"ProbabilisticPCA({q})", model.score(X_test), time.perf_counter() - start))
    print(
        f"\nHeld-out mean log-likelihood on dequantised digits ({len(X_train)} training, "
        f"{len(X_test)} held-out images)"
    )
    print(f"  {'model':<46} {'nats/image':>11} {'fit s':>7}")
    for name, score, seconds in rows:
        print(f"  {name:<46} {score:>11.2f} {seconds:>7.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings of each, alternating")
    parser.add_argument(
        "--config",
        action="append",
        metavar="HIDDEN:BATCH",
        help=f"hidden width and batch size (default: {' and '.join(DEFAULT_CONFIGS)})",
    )
    parser.add_argument("--latent", type=int, default=10)
    parser.add_argument(
        "--training-samples",
        type=int,
        default=1,
        help="draws per row in training: 1 the ELBO, k > 1 the IWAE bound (both libraries)",
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-table", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.config = args.config or list(DEFAULT_CONFIGS)
    if args.worker:
        (args.threads,) = args.threads
        worker(args)
        return
    X_train, X_test = digits_split()
    load_before = os.getloadavg()
    results = run_workers(args)
    print_timings(results, args, len(X_train), load_before, os.getloadavg())
    if not args.skip_table:
        held_out_table(X_train, X_test)


if __name__ == "__main__":
    main()
