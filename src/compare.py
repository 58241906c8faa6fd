"""Is a difference between two settings real? Compare their per-image test results over seeds and images.

    python src/compare.py --a A_seed0_per_image.csv A_seed1_per_image.csv ... --b B_seed0_per_image.csv ...
    python src/compare.py A_per_image.csv B_per_image.csv            (one trained model per setting)
    python src/compare.py --a ... --b ... --json result.json         (the figures for scripts, too)

Each file is a per-image CSV of src/inference.py (with its .json), one per seed of a setting; every file must be
a test of the same split and images at the same resolution. The seed of each file comes from its record, and the
settings are paired by seed when both have the same seeds. Printed (src/significance.py says how each is found):
each setting's mean, its standard deviation over seeds and its worst seed; the difference B - A with a 95 %
interval over seeds and images, a seed-level test, Levene's test of equal spread, the seeds per setting that would
detect the difference; the image-level interval and p, which hold for these trained models only; and a verdict.
With one seed per setting only the image-level part can be computed, and it is labelled so.
"""
import argparse
from pathlib import Path

import numpy as np

import per_image
import significance
from arg_types import seed_int
from errors import ProjectError, run_cli
from files import save_json
from recipes import recipe_label

METRICS = ("dice", "iou", "boundary_iou")
SAME_TEST = ("split", "resolution", "data_path")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", metavar="CSV", help="two per-image CSVs, A then B: one trained model "
                        "per setting (or use --a and --b)")
    parser.add_argument("--a", nargs="+", default=[], metavar="CSV", help="setting A: one per-image CSV per seed")
    parser.add_argument("--b", nargs="+", default=[], metavar="CSV", help="setting B: one per-image CSV per seed")
    parser.add_argument("--metric", default="dice", choices=METRICS)
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the bootstrap and permutation draws")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the result to this JSON file")
    return parser


def input_files(args):
    """(A's CSVs, B's CSVs) from the two positional files or from --a and --b."""
    if args.files and (args.a or args.b):
        raise ProjectError("give either two per-image CSVs (A, then B) or --a and --b with one CSV per seed each, "
                           "not both forms at once.")
    if args.files:
        if len(args.files) != 2:
            raise ProjectError(f"{len(args.files)} files given; the short form compares exactly two per-image CSVs, "
                               "A then B. For several seeds per setting use --a A_seed0.csv ... --b B_seed0.csv ...")
        return args.files[:1], args.files[1:]
    if not (args.a and args.b):
        raise ProjectError("nothing to compare: give two per-image CSVs, or --a and --b with one CSV per seed each.")
    return args.a, args.b


def recorded_args(source):
    """The model's training arguments in a per-image CSV's record ({} in records of older src/inference.py)."""
    args = source.get("args")
    return args if isinstance(args, dict) else {}


def recorded_seed(source, path):
    """The training seed in a per-image CSV's record; ProjectError where the record has none."""
    seed = recorded_args(source).get("seed")
    if not isinstance(seed, int):
        raise ProjectError(f"{path.with_suffix('.json')} does not record the training seed of the model it tested "
                           "(a test by an older src/inference.py); with several CSVs per setting each must say its "
                           "seed. Test the model again with src/inference.py to get a CSV that does.")
    return seed


def check_same_test(sources, paths):
    """ProjectError unless every file is a test of the same split and dataset at the same resolution, and, at the
    models' input size, of models of one image size (their scores are against masks resized to that size)."""
    first, first_path = sources[0], paths[0]
    keys = SAME_TEST + (("image_size",) if first.get("resolution") == "input" else ())
    for source, path in zip(sources[1:], paths[1:]):
        differing = [key for key in keys if value(source, key) != value(first, key)]
        if differing:
            details = "; ".join(f"{key} {value(first, key)!r} against {value(source, key)!r}" for key in differing)
            raise ProjectError(f"{first_path} and {path} are not results of the same test ({details}); compare "
                               "per-image CSVs of the same split and dataset, scored at the same resolution (at the "
                               "input resolution, of models trained at the same image size).")


def value(source, key):
    """A record's value; the image size of older records is in their model record only."""
    if key == "image_size":
        return source.get("image_size", source.get("model_record", {}).get("image_size"))
    return source.get(key)


def check_one_setting(sources, paths, label):
    """ProjectError unless a setting's files are tests of one model type and recipe (trained with other seeds)."""
    def setting(source):
        record = source.get("model_record", {})
        args = recorded_args(source)
        return record.get("model_type"), record.get("use_cbam"), recipe_label(args) if args else None

    for source, path in zip(sources[1:], paths[1:]):
        if setting(source) != setting(sources[0]):
            raise ProjectError(f"setting {label} mixes models: {paths[0]} tested {setting(sources[0])} and {path} "
                               f"{setting(source)} (model type, CBAM, recipe). Give each setting the CSVs of one "
                               "model and recipe, one per seed.")


def check_seeds_unique(seeds, paths, label):
    for index, seed in enumerate(seeds):
        if seed in seeds[:index]:
            raise ProjectError(f"setting {label} has seed {seed} twice ({paths[seeds.index(seed)]} and "
                               f"{paths[index]}); give one CSV per seed, so that each training run counts once.")


def paired(a, b, names_a="A", names_b="B"):
    """The scores of A and B as two arrays over the same images, in A's order; different images are an error."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ProjectError(f"{names_a} and {names_b} scored different images ({len(only_a)} only in {names_a}, such "
                           f"as {only_a[:3]}; {len(only_b)} only in {names_b}, such as {only_b[:3]}); compare results "
                           "of the same split of the same dataset.")
    names = list(a)
    return np.array([a[name] for name in names]), np.array([b[name] for name in names])


def load_scores(paths_a, paths_b, metric="dice", seeds_a=None, seeds_b=None):
    """(A's scores, B's scores, A's seeds, B's seeds): seeds x images matrices over the same images in one order,
    from per-image CSVs, after every check. Seeds come from the records unless given; a single file per setting
    needs none."""
    paths_a, paths_b = [Path(path) for path in paths_a], [Path(path) for path in paths_b]
    read = {path: per_image.read(path) for path in paths_a + paths_b}
    check_same_test([read[path][1] for path in paths_a + paths_b], paths_a + paths_b)
    sides = []
    for label, paths, seeds in (("A", paths_a, seeds_a), ("B", paths_b, seeds_b)):
        sources = [read[path][1] for path in paths]
        check_one_setting(sources, paths, label)
        if seeds is None and len(paths) > 1:
            seeds = [recorded_seed(source, path) for source, path in zip(sources, paths)]
        elif seeds is None:
            seeds = [recorded_args(sources[0]).get("seed")]
        check_seeds_unique(seeds, paths, label)
        sides.append(list(seeds))
    first = {row["name"]: row[metric] for row in read[paths_a[0]][0]}
    matrices = [[paired(first, {row["name"]: row[metric] for row in read[path][0]}, paths_a[0], path)[1]
                 for path in paths] for paths in (paths_a, paths_b)]
    return np.array(matrices[0]), np.array(matrices[1]), *sides


def p_text(p):
    return f"{p:.4f}" if p >= 0.0001 else f"{p:.1e}"


def interval_text(interval):
    return f"{interval[0]:+.4f} to {interval[1]:+.4f}"


def files_text(paths):
    return str(paths[0]) if len(paths) == 1 else f"{len(paths)} CSVs, first {paths[0]}"


def setting_line(label, name, result, key):
    """One setting: its name, mean, spread over seeds and worst seed."""
    seeds, spread = result[f"seeds_{key}"], result[f"spread_{key}"]
    line = f"{label}, {name}: mean per-image {result['metric']} {result[f'mean_{key}']:.4f}"
    if spread["sd"] is None:
        return line + " (one trained model)"
    return (line + f" ± {spread['sd']:.4f} (sd over seeds {', '.join(map(str, seeds))}); worst seed "
            f"{spread['worst_seed']} ({spread['worst']:.4f})")


def seed_lines(result):
    """What the seeds say: the difference with its two-level interval, the seed-level tests, spread, seeds needed."""
    pairing = "paired by seed" if result["paired"] else "not paired: the settings have different seeds"
    sign_flip = (f"; exact sign-flip over the {len(result['seeds_a'])} seed pairs p = "
                 f"{p_text(result['seed_sign_flip_p'])}, which cannot go below "
                 f"{p_text(2 / 2 ** len(result['seeds_a']))}" if result["paired"] else "")
    levene = ("it needs at least 3 seeds per setting" if result["spread_p"] is None
              else f"p = {p_text(result['spread_p'])}")
    needed = result["seeds_needed"]
    if needed is None:
        power = "no number of seeds detects a difference of 0."
    elif needed > significance.MOST_SEEDS:
        power = f"more than {significance.MOST_SEEDS:,} seeds per setting would be needed to detect it."
    else:
        power = (f"about {needed} seeds per setting would detect a difference of this size with 80 % power at this "
                 "spread (the observed difference is itself noisy, so this is a guide).")
    return [f"Over seeds and images ({result['images']} images, {pairing}): B - A = {result['difference']:+.4f}, 95 % "
            f"interval {interval_text(result['seed_interval'])} (two-level bootstrap: seeds, then images); "
            f"{result['seed_test']} p = {p_text(result['seed_p'])}{sign_flip}.",
            f"Levene's test that A and B spread equally over seeds (sd {result['spread_a']['sd']:.4f} and "
            f"{result['spread_b']['sd']:.4f}): {levene}.",
            f"Seeds needed: {power}"]


def image_line(result):
    averaged = " (per-image scores averaged over each setting's seeds)" if max(
        len(result["seeds_a"]), len(result["seeds_b"])) > 1 else ""
    return (f"For these trained models only{averaged}, paired over {result['images']} images: 95 % interval "
            f"{interval_text(result['image_interval'])} (bootstrap over images), sign-flip p = "
            f"{p_text(result['image_p'])}; B wins on {result['wins_b']} images, A on {result['wins_a']}, "
            f"{result['ties']} ties. This says how much the result moves on other test images, not on retraining.")


def verdict(result):
    """One sentence on the seed-aware figures (on the image-level ones, labelled, with one seed per setting)."""
    metric, difference = result["metric"], result["difference"]
    better = "B" if difference > 0 else "A"
    if result["seed_interval"] is None:
        figures = f"95 % interval {interval_text(result['image_interval'])}, p = {p_text(result['image_p'])}"
        retraining = ("whether it survives retraining is not measured: the seed-level part needs at least two seeds "
                      "per setting.")
        if significance.is_shown(result):
            return (f"{better} is better for these two trained models: B - A = {difference:+.4f} in mean "
                    f"per-image {metric} ({figures}); {retraining}")
        return (f"The difference of {difference:+.4f} in mean per-image {metric} is not distinguishable from noise "
                f"even for these two trained models ({figures}); {retraining}")
    seeds = f"n = {len(result['seeds_a'])} and {len(result['seeds_b'])} seeds"
    figures = (f"95 % interval over seeds and images {interval_text(result['seed_interval'])}, {result['seed_test']} "
               f"p = {p_text(result['seed_p'])}, {seeds}")
    if significance.is_shown(result):
        return f"{better} is better: B - A = {difference:+.4f} in mean per-image {metric} ({figures})."
    return (f"Not shown: the difference of {difference:+.4f} in mean per-image {metric} is not distinguishable "
            f"from retraining noise ({figures}).")


def summary(result, name_a, name_b):
    """The printed comparison, line by line (src/reproduce.py writes the same into REPORT.md)."""
    lines = [setting_line("A", name_a, result, "a"), setting_line("B", name_b, result, "b")]
    if result["seed_interval"] is None:
        lines.append("Seed-level figures need at least two seeds per setting; only the image-level part follows.")
    else:
        lines += seed_lines(result)
    return lines + [image_line(result), f"Verdict: {result['verdict']}"]


def compare_files(paths_a, paths_b, metric="dice", seed=0, seeds_a=None, seeds_b=None):
    """The comparison of two settings' per-image CSVs (src/significance.py's figures, the metric and the verdict)."""
    a, b, seeds_a, seeds_b = load_scores(paths_a, paths_b, metric, seeds_a, seeds_b)
    result = significance.compare(a, b, seeds_a, seeds_b, seed) | {"metric": metric}
    return result | {"verdict": verdict(result), "files_a": list(map(str, paths_a)),
                     "files_b": list(map(str, paths_b))}


def main(args):
    paths_a, paths_b = input_files(args)
    result = compare_files(paths_a, paths_b, args.metric, args.seed)
    print("\n".join(summary(result, files_text(paths_a), files_text(paths_b))))
    if args.json:
        save_json(result, args.json)
        print(f"Wrote {args.json}")
    return result


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
