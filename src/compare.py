"""Is a difference between two models real? Compare their per-image results on the same images.

    python src/compare.py checkpoints/Unet_bs8_best_model_test_..._per_image.csv checkpoints/ResNet34_..._per_image.csv

Both files are per-image CSVs written by src/inference.py for the same split and images. Printed: each model's
mean per-image Dice, the paired difference B - A with a 95 % bootstrap confidence interval (resampling images,
seeded), a paired sign-flip permutation p-value (two-sided), and how many images each model wins.
"""
import argparse

import numpy as np

import per_image
from arg_types import seed_int
from errors import ProjectError, run_cli

RESAMPLES = 10_000
CHUNK = 500  # resamples drawn at once: 500 x 3,669 test images is 15 MB


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="per-image CSV of model A")
    parser.add_argument("b", help="per-image CSV of model B")
    parser.add_argument("--metric", default="dice", choices=["dice", "iou", "boundary_iou"])
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the bootstrap and permutation draws")
    return parser


def read_scores(path, metric="dice"):
    """({name: score}, source) of a per-image CSV."""
    rows, source = per_image.read(path)
    return {row["name"]: row[metric] for row in rows}, source


def paired(a, b, names_a="A", names_b="B"):
    """The scores of A and B as two arrays over the same images, in A's order; different images are an error."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ProjectError(f"{names_a} and {names_b} scored different images ({len(only_a)} only in {names_a}, such "
                           f"as {only_a[:3]}; {len(only_b)} only in {names_b}, such as {only_b[:3]}); compare results "
                           "of the same split of the same dataset.")
    names = list(a)
    return np.array([a[name] for name in names]), np.array([b[name] for name in names])


def chunk_sizes(resamples):
    return [min(CHUNK, resamples - start) for start in range(0, resamples, CHUNK)]


def bootstrap_interval(differences, seed=0, resamples=RESAMPLES, level=0.95):
    """Percentile bootstrap confidence interval of the mean of paired differences (images resampled with
    replacement)."""
    rng = np.random.default_rng(seed)
    count = len(differences)
    means = np.concatenate([differences[rng.integers(0, count, (size, count))].mean(axis=1)
                            for size in chunk_sizes(resamples)])
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def sign_flip_p_value(differences, seed=0, resamples=RESAMPLES):
    """Two-sided p-value of a paired sign-flip permutation test: under no difference, each paired difference is as
    likely negative as positive. Counts the random sign flips whose mean is at least as far from 0 as the observed
    one, with the observed assignment included, (count + 1) / (resamples + 1)."""
    rng = np.random.default_rng(seed)
    flipped = np.concatenate([np.abs((rng.choice(np.array([-1.0, 1.0]), (size, len(differences))) * differences)
                                     .mean(axis=1)) for size in chunk_sizes(resamples)])
    observed = abs(differences.mean())
    return float((np.sum(flipped >= observed - 1e-12) + 1) / (resamples + 1))


def compare_scores(a, b, seed=0):
    """The comparison of paired per-image scores a and b (arrays over the same images)."""
    differences = b - a
    low, high = bootstrap_interval(differences, seed)
    return {"images": len(a), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "difference": float(differences.mean()), "ci_low": low, "ci_high": high,
            "p_value": sign_flip_p_value(differences, seed), "wins_a": int((a > b).sum()),
            "wins_b": int((b > a).sum()), "ties": int((a == b).sum())}


def check_same_split(source_a, source_b, path_a, path_b):
    keys = ("split", "resolution", "data_path")
    differing = [key for key in keys if source_a.get(key) != source_b.get(key)]
    if differing:
        details = "; ".join(f"{key} {source_a.get(key)!r} against {source_b.get(key)!r}" for key in differing)
        raise ProjectError(f"{path_a} and {path_b} are not results of the same test ({details}); compare per-image "
                           "CSVs of the same split and dataset, scored at the same resolution.")


def verdict(result, metric="dice"):
    """One sentence: is the difference distinguishable from noise at the 5 % level?"""
    interval = f"95 % CI {result['ci_low']:+.4f} to {result['ci_high']:+.4f}, p = {result['p_value']:.4f}"
    if result["p_value"] < 0.05 and (result["ci_low"] > 0 or result["ci_high"] < 0):
        better = "B" if result["difference"] > 0 else "A"
        return f"{better} is better: the mean per-image {metric} differs by {result['difference']:+.4f} ({interval})."
    return (f"The difference of {result['difference']:+.4f} in mean per-image {metric} is not distinguishable from "
            f"noise ({interval}).")


def main(args):
    scores_a, source_a = read_scores(args.a, args.metric)
    scores_b, source_b = read_scores(args.b, args.metric)
    check_same_split(source_a, source_b, args.a, args.b)
    result = compare_scores(*paired(scores_a, scores_b, args.a, args.b), seed=args.seed)
    print(f"A: {args.a}\n   mean {args.metric} {result['mean_a']:.4f}, wins {result['wins_a']}")
    print(f"B: {args.b}\n   mean {args.metric} {result['mean_b']:.4f}, wins {result['wins_b']}")
    print(f"{result['images']} images, {result['ties']} ties. {verdict(result, args.metric)}")
    return result


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
