"""Candidate default settings of AmortizedVAE, measured on real data (issue 23).

What it measures
----------------
Each candidate setting of ``AmortizedVAE`` (every other parameter at its
default, ``random_state=0``) is fitted on 80% of a dataset and judged by the
held-out mean log-likelihood of the other 20% (``model.score(X_test)``, nats
per row, importance-weighted with the default 100 draws), with its fit time
(seconds) and ``n_iter_`` (epochs). Warnings raised by the fit (for example
:class:`~skem.VarianceFloorWarning` about nearly constant features, or a
``ConvergenceWarning``) are counted in the table.

The datasets are split into

* TUNING sets, used to choose the defaults: dequantised ``load_digits``
  (``load_dequantized_digits(random_state=0)[0] / 17``, that is
  (X + U(0,1)) / 17) and scikit-learn's ``load_breast_cancer`` (raw: the VAE
  standardises inside);
* HELD-OUT sets, used only to judge the choice: scikit-learn's ``load_wine``,
  statsmodels' bundled ``star98`` (its numeric columns; bundled, no network)
  and vega_datasets' local ``cars`` (numeric columns, rows with NaN dropped).

The candidates: today's defaults (latent 2, one tanh layer of 128, learning
rate 1e-3); a latent size set by the data's shape,
``n_components = min(20, max(2, n_features // 4))``, with the same network;
with ReLU networks of (200, 200); and each with learning rate 3e-3. Scores are
log-densities, so they are compared within a dataset: the summary gives each
candidate's mean gain over today's defaults (nats per row) and mean rank,
separately over the tuning and the held-out sets.

Two further sections: the issue's target (``AmortizedVAE(n_components=20,
random_state=0)`` on dequantised digits, at least 75 nats/image held out in
under a minute) with single-parameter changes to see which one gets there;
and ``n_training_samples=5`` (the IWAE objective) for the best candidate on
one dataset.

One fit runs at a time (the machine is shared).

How to run
----------
::

    python benchmarks/bench_vae_defaults.py            # everything (~20-30 min on 2 loaded cores)
    python benchmarks/bench_vae_defaults.py --quick    # smoke run: small sets, 3 candidates, 30 epochs
    python benchmarks/bench_vae_defaults.py --sections table target iwae
    python benchmarks/bench_vae_defaults.py --iwae-dataset breast_cancer

RESULTS
-------
Measured 2026-12-07 on AMD EPYC (/proc/cpuinfo model name "AMD EPYC"), 2
cores, shared with other jobs: load average 4.27 4.32 4.35 at the start,
5.4-6.0 during the run (fit times are therefore noisy, up to ~3x: the same
relu 200-200 lr 3e-3 fit on digits took 22 s at q=16 and 73 s at q=20 with
about the same number of epochs). One run, one seed (random_state=0); the
full run took 782 s plus 186 s for the combinations. skem at 497396f plus
the working tree.

Held-out mean log-likelihood (nats/row), 80/20 split, random_state=0::

    set      dataset       n x d    candidate                       network                    score  fit s n_iter warnings
    tuning   digits        1797x64  default (q=2, tanh 128, lr 1e-3) q=2  tanh 128     lr=1e-03   55.589  74.5  295  -
    tuning   digits        1797x64  q=rule, tanh 128                q=16 tanh 128     lr=1e-03   71.380  69.8  328  -
    tuning   digits        1797x64  q=rule, tanh 128, lr 3e-3       q=16 tanh 128     lr=3e-03   70.815  26.7  145  -
    tuning   digits        1797x64  q=rule, relu 200-200            q=16 relu 200-200 lr=1e-03   70.607  28.1   93  -
    tuning   digits        1797x64  q=rule, relu 200-200, lr 3e-3   q=16 relu 200-200 lr=3e-03   74.339  22.0   88  -
    tuning   breast_cancer 569x30   default (q=2, tanh 128, lr 1e-3) q=2  tanh 128     lr=1e-03   21.535   2.2  197  -
    tuning   breast_cancer 569x30   q=rule, tanh 128                q=7  tanh 128     lr=1e-03   30.984   2.8  235  -
    tuning   breast_cancer 569x30   q=rule, tanh 128, lr 3e-3       q=7  tanh 128     lr=3e-03   30.442   1.5  126  -
    tuning   breast_cancer 569x30   q=rule, relu 200-200            q=7  relu 200-200 lr=1e-03   29.276   6.1  106  -
    tuning   breast_cancer 569x30   q=rule, relu 200-200, lr 3e-3   q=7  relu 200-200 lr=3e-03   28.765   3.3   82  -
    held-out wine          178x13   default (q=2, tanh 128, lr 1e-3) q=2  tanh 128     lr=1e-03  -19.953   0.1  117  -
    held-out wine          178x13   q=rule, tanh 128                q=3  tanh 128     lr=1e-03  -19.693   0.1  153  -
    held-out wine          178x13   q=rule, tanh 128, lr 3e-3       q=3  tanh 128     lr=3e-03  -19.648   0.1  103  -
    held-out wine          178x13   q=rule, relu 200-200            q=3  relu 200-200 lr=1e-03  -24.079   7.2  123  -
    held-out wine          178x13   q=rule, relu 200-200, lr 3e-3   q=3  relu 200-200 lr=3e-03  -21.138  15.5   93  -
    held-out star98        303x22   default (q=2, tanh 128, lr 1e-3) q=2  tanh 128     lr=1e-03 -101.915   2.0  179  VarianceFloorWarning
    held-out star98        303x22   q=rule, tanh 128                q=5  tanh 128     lr=1e-03  -93.691   1.4  203  VarianceFloorWarning
    held-out star98        303x22   q=rule, tanh 128, lr 3e-3       q=5  tanh 128     lr=3e-03  -92.615   1.1  189  VarianceFloorWarning
    held-out star98        303x22   q=rule, relu 200-200            q=5  relu 200-200 lr=1e-03 -100.770   6.3   98  VarianceFloorWarning
    held-out star98        303x22   q=rule, relu 200-200, lr 3e-3   q=5  relu 200-200 lr=3e-03 -100.960  12.7   61  VarianceFloorWarning
    held-out cars          392x6    default (q=2, tanh 128, lr 1e-3) q=2  tanh 128     lr=1e-03  -22.669   0.3  107  -
    held-out cars          392x6    q=rule, tanh 128                q=2  tanh 128     lr=1e-03  -22.669   0.3  107  -
    held-out cars          392x6    q=rule, tanh 128, lr 3e-3       q=2  tanh 128     lr=3e-03  -22.517   0.3  123  -
    held-out cars          392x6    q=rule, relu 200-200            q=2  relu 200-200 lr=1e-03  -22.159   6.5   91  -
    held-out cars          392x6    q=rule, relu 200-200, lr 3e-3   q=2  relu 200-200 lr=3e-03  -21.712   5.7  103  -

    star98: "1 of 22 features are nearly constant in the training data
    (features [9]): their variance is below the decoder's variance floor
    0.448" (every candidate).

Gain over today's defaults (nats/row, mean over datasets) and mean rank::

    candidate                        tuning gain  tuning rank  held-out gain  held-out rank  mean fit s
    default (q=2, tanh 128, lr 1e-3)        0.00          5.0           0.00            4.0        15.8
    q=rule, tanh 128                       12.62          1.5           2.83            2.7        14.9
    q=rule, tanh 128, lr 3e-3              12.07          2.5           3.25            1.7         5.9
    q=rule, relu 200-200                   11.38          3.5          -0.82            3.3        10.8
    q=rule, relu 200-200, lr 3e-3          12.99          2.5           0.24            3.0        11.9

Target, dequantised digits, AmortizedVAE(n_components=20, random_state=0),
>= 75 nats/image in < 60 s (no setting met it)::

    setting                            score  fit s n_iter
    n_components=20 (rest default)     71.39   53.6   324
    + activation='relu'                71.59   73.2   238
    + hidden_layer_sizes=(256,)        69.27   36.1   240
    + learning_rate=3e-3               71.81   60.9   173
    + batch_size=32                    72.13   37.3   305
    + batch_size=128                   71.47   54.7   500  (ConvergenceWarning: hit max_iter)
    + n_iter_no_change=50              72.24   59.4   456
    + relu 200-200 + lr 3e-3           74.33   73.4    96
    + relu 200-200 + lr 3e-3 + bs 32   74.18   88.8    83
    + lr 3e-3 + batch_size=32          72.49   22.5   203

IWAE training, 'q=rule, tanh 128' (q=16) on digits::

    k  score   fit s  n_iter
    1  71.380   69.8  328
    5  71.293  105.4  313
"""

import argparse
import os
import time
import warnings

import numpy as np
from _machine import cpu_name
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.model_selection import train_test_split

from skem import AmortizedVAE
from skem.datasets import load_dequantized_digits


def latent_rule(n_features):
    """The shape-dependent latent size tried here."""
    return min(20, max(2, n_features // 4))


# ---------------------------------------------------------------- datasets


def digits():
    return load_dequantized_digits(random_state=0)[0] / 17


def breast_cancer():
    return load_breast_cancer().data


def wine():
    return load_wine().data


def star98():
    from statsmodels.datasets import star98 as module

    frame = module.load_pandas().data
    return frame.select_dtypes("number").dropna().to_numpy(dtype=float)


def cars():
    from vega_datasets import local_data

    frame = local_data.cars()
    return frame.select_dtypes("number").dropna().to_numpy(dtype=float)


TUNING = {"digits": digits, "breast_cancer": breast_cancer}
HELD_OUT = {"wine": wine, "star98": star98, "cars": cars}


# ---------------------------------------------------------------- candidates

# name -> function of n_features giving the parameters changed from the defaults
CANDIDATES = {
    "default (q=2, tanh 128, lr 1e-3)": lambda d: {},
    "q=rule, tanh 128": lambda d: {"n_components": latent_rule(d)},
    "q=rule, tanh 128, lr 3e-3": lambda d: {"n_components": latent_rule(d), "learning_rate": 3e-3},
    "q=rule, relu 200-200": lambda d: {
        "n_components": latent_rule(d),
        "hidden_layer_sizes": (200, 200),
        "activation": "relu",
    },
    "q=rule, relu 200-200, lr 3e-3": lambda d: {
        "n_components": latent_rule(d),
        "hidden_layer_sizes": (200, 200),
        "activation": "relu",
        "learning_rate": 3e-3,
    },
}
QUICK_CANDIDATES = list(CANDIDATES)[:2] + ["q=rule, relu 200-200"]

# single changes from AmortizedVAE(n_components=20) for the digits target
TARGET_CHANGES = {
    "n_components=20 (rest default)": {},
    "+ activation='relu'": {"activation": "relu"},
    "+ hidden_layer_sizes=(256,)": {"hidden_layer_sizes": (256,)},
    "+ learning_rate=3e-3": {"learning_rate": 3e-3},
    "+ batch_size=32": {"batch_size": 32},
    "+ batch_size=128": {"batch_size": 128},
    "+ n_iter_no_change=50": {"n_iter_no_change": 50},
}

# changes of two or three parameters, tried when no single change reached the target
TARGET_COMBINATIONS = {
    "+ relu 200-200 + lr 3e-3": {
        "activation": "relu",
        "hidden_layer_sizes": (200, 200),
        "learning_rate": 3e-3,
    },
    "+ relu 200-200 + lr 3e-3 + bs 32": {
        "activation": "relu",
        "hidden_layer_sizes": (200, 200),
        "learning_rate": 3e-3,
        "batch_size": 32,
    },
    "+ lr 3e-3 + batch_size=32": {"learning_rate": 3e-3, "batch_size": 32},
}


TABLE_RESULTS = {}


def split(X):
    return train_test_split(X, test_size=0.2, random_state=0)


def measure(X_train, X_test, params):
    """Fit one model; its held-out score, fit time, epochs and warnings."""
    model = AmortizedVAE(random_state=0, **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model.fit(X_train)
        seconds = time.perf_counter() - start
        score = model.score(X_test)
    kinds = sorted({w.category.__name__ for w in caught})
    return {
        "score": score,
        "seconds": seconds,
        "n_iter": model.n_iter_,
        "warnings": ",".join(kinds) or "-",
        "messages": sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
        "q": model.n_components,
    }


def describe(params):
    hidden = params.get("hidden_layer_sizes", (128,))
    return (
        f"q={params.get('n_components', 2):<2} "
        f"{params.get('activation', 'tanh'):<4} {'-'.join(map(str, hidden)):<7} "
        f"lr={params.get('learning_rate', 1e-3):.0e}"
    )


def print_messages(result, seen):
    for message in result["messages"]:
        short = message if len(message) < 300 else message[:300] + "..."
        if short not in seen:
            seen.add(short)
            print(f"      warning: {short}", flush=True)


# ---------------------------------------------------------------- sections


def table(args):
    candidates = QUICK_CANDIDATES if args.quick else list(CANDIDATES)
    groups = {"tuning": TUNING, "held-out": HELD_OUT}
    if args.quick:
        groups = {"tuning": {"breast_cancer": breast_cancer}, "held-out": {"wine": wine}}
    results = TABLE_RESULTS  # (group, dataset, candidate) -> result
    seen = set()
    header = f"{'set':<8} {'dataset':<13} {'n x d':<9} {'candidate':<33} {'network':<25} {'score':>10} {'fit s':>7} {'n_iter':>6}  warnings"
    print("\n== Held-out mean log-likelihood (nats/row), 80/20 split, random_state=0 ==")
    print(header)
    print("-" * len(header))
    for group, datasets in groups.items():
        for name, load in datasets.items():
            X = load()
            X_train, X_test = split(X)
            for candidate in candidates:
                params = CANDIDATES[candidate](X.shape[1])
                if args.quick:
                    params = {**params, "max_iter": 30}
                result = measure(X_train, X_test, params)
                results[group, name, candidate] = result
                print(
                    f"{group:<8} {name:<13} {f'{X.shape[0]}x{X.shape[1]}':<9} {candidate:<33} "
                    f"{describe(params):<25} {result['score']:>10.3f} {result['seconds']:>7.1f} "
                    f"{result['n_iter']:>6}  {result['warnings']}",
                    flush=True,
                )
                print_messages(result, seen)
    print(
        "\n== Summary: gain over today's defaults (nats/row, mean over datasets) and mean rank (1 = best) =="
    )
    print(
        f"{'candidate':<33} {'tuning gain':>12} {'tuning rank':>12} {'held-out gain':>14} {'held-out rank':>14} {'mean fit s':>11}"
    )
    summary = {}
    for candidate in candidates:
        row = []
        for group, datasets in groups.items():
            gains, ranks = [], []
            for name in datasets:
                scores = {c: results[group, name, c]["score"] for c in candidates}
                gains.append(scores[candidate] - scores[candidates[0]])
                ranks.append(1 + sum(s > scores[candidate] for s in scores.values()))
            row += [np.mean(gains), np.mean(ranks)]
        seconds = np.mean([r["seconds"] for (g, n, c), r in results.items() if c == candidate])
        summary[candidate] = row
        print(
            f"{candidate:<33} {row[0]:>12.2f} {row[1]:>12.1f} {row[2]:>14.2f} {row[3]:>14.1f} {seconds:>11.1f}"
        )
    best = max(candidates, key=lambda c: (-summary[c][1], summary[c][0]))
    print(f"best on the tuning sets (mean rank, then gain): {best}")
    return best


def target(args, changes=TARGET_CHANGES):
    X_train, X_test = split(digits())
    print(
        "\n== Target: dequantised digits, AmortizedVAE(n_components=20, random_state=0), >= 75 nats/image in < 60 s =="
    )
    print(f"{'setting':<32} {'score':>8} {'fit s':>7} {'n_iter':>6}  meets  warnings")
    if args.quick:
        changes = {k: {**v, "max_iter": 30} for k, v in list(changes.items())[:2]}
    seen = set()
    for name, change in changes.items():
        result = measure(X_train, X_test, {"n_components": 20, **change})
        meets = result["score"] >= 75 and result["seconds"] < 60
        print(
            f"{name:<32} {result['score']:>8.2f} {result['seconds']:>7.1f} {result['n_iter']:>6}  "
            f"{'yes' if meets else 'no':<5}  {result['warnings']}",
            flush=True,
        )
        print_messages(result, seen)


def iwae(args, best):
    load = {**TUNING, **HELD_OUT}[args.iwae_dataset]
    X = load()
    X_train, X_test = split(X)
    params = CANDIDATES[best](X.shape[1])
    print(f"\n== IWAE training (n_training_samples) for '{best}' on {args.iwae_dataset} ==")
    print(f"{'k':<3} {'score':>10} {'fit s':>7} {'n_iter':>6}  warnings")
    for k in (1, 5):
        extra = {"n_training_samples": k}
        if args.quick:
            extra["max_iter"] = 30
        group = "tuning" if args.iwae_dataset in TUNING else "held-out"
        if k == 1 and (group, args.iwae_dataset, best) in TABLE_RESULTS:
            result = TABLE_RESULTS[group, args.iwae_dataset, best]  # the table's fit, not repeated
        else:
            result = measure(X_train, X_test, {**params, **extra})
        print(
            f"{k:<3} {result['score']:>10.3f} {result['seconds']:>7.1f} {result['n_iter']:>6}  {result['warnings']}",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sets, 3 candidates, 30 epochs")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["table", "target", "combos", "iwae"],
        choices=["table", "target", "combos", "iwae"],
    )
    parser.add_argument("--iwae-dataset", default="digits", choices=[*TUNING, *HELD_OUT])
    parser.add_argument(
        "--iwae-candidate",
        default=None,
        help="candidate name for the IWAE section (default: best of the table)",
    )
    args = parser.parse_args()
    if args.quick and args.iwae_dataset == "digits":
        args.iwae_dataset = "breast_cancer"
    print(
        f"CPU: {cpu_name()}; {os.cpu_count()} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    start = time.perf_counter()
    best = args.iwae_candidate or "q=rule, relu 200-200"
    if "table" in args.sections:
        best = args.iwae_candidate or table(args)
    if "target" in args.sections:
        target(args)
    if "combos" in args.sections:
        target(args, TARGET_COMBINATIONS)
    if "iwae" in args.sections:
        iwae(args, best)
    print(
        f"\ntotal {time.perf_counter() - start:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
