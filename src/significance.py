"""Is a difference between two settings real? Statistics over training runs (seeds) and test images (no torch).

A setting's results are a matrix of per-image scores, one row per seed (one training run each), one column per
test image, the same images in the same order for every row of both settings. Two sources of noise move a
comparison: which images were tested, and how training went. Retraining moves results here more than most
claimed effects do, so the headline figures count both (Bouthillier et al., "Accounting for Variance in Machine
Learning Benchmarks", MLSys 2021; Agarwal et al., "Deep RL at the Edge of the Statistical Precipice", NeurIPS
2021):

- seed-aware interval: a two-level bootstrap, seeds resampled, then images;
- seed-level test: a paired t-test on the per-seed means when both settings have the same seeds (the same seed
  gives the same initialisation, data order and augmentation draws), Welch's t-test otherwise; beside it the exact
  sign-flip test over paired seeds, which assumes no normality but cannot go below 2 / 2**seeds;
- image-level interval and test (scipy's bootstrap and paired permutation test on the per-image scores averaged
  over each setting's seeds): how much the result would move on other test images for these trained models only;
- the spread of each setting over seeds, Levene's test of equal spread (for claims that a recipe trains more
  reliably), and the seeds per setting a paired or Welch t-test would need to detect the observed difference.
"""
import math

import numpy as np
from scipy import stats

RESAMPLES = 10_000
BATCH = 500  # resamples drawn at once: 500 x 3,669 test images is 15 MB
LEVEL = 0.95
ALPHA = 0.05
POWER = 0.8
MOST_SEEDS = 10_000  # beyond this the seeds needed are reported as "more"


def mean(values, axis=-1):
    return np.mean(values, axis=axis)


def sign_flip_p(differences, resamples, rng=None):
    """Two-sided p of the paired permutation test: under no difference each paired difference is as likely
    negative as positive (scipy's permutation test of one sample flips signs; exact when resamples >= 2**n)."""
    return float(stats.permutation_test((differences,), mean, permutation_type="samples", vectorized=True,
                                        n_resamples=resamples, batch=BATCH, rng=rng).pvalue)


def image_level(a, b, rng):
    """(interval, p) of B - A on per-image scores of one trained model per side (or seed-averaged ones): scipy's
    percentile bootstrap over images and the sign-flip test over images."""
    interval = stats.bootstrap((b - a,), mean, vectorized=True, n_resamples=RESAMPLES, batch=BATCH,
                               method="percentile", confidence_level=LEVEL, rng=rng).confidence_interval
    return (float(interval.low), float(interval.high)), sign_flip_p(b - a, RESAMPLES, rng)


def weights(draws, count):
    """Per-row share of each index 0..count-1 among the drawn indices (a resample as weights, rows summing to 1)."""
    offsets = np.arange(len(draws))[:, None] * count  # row r counts into bins r * count ... r * count + count - 1
    counts = np.bincount((draws + offsets).ravel(), minlength=len(draws) * count).reshape(len(draws), count)
    return counts / draws.shape[1]


def two_level_interval(a, b, paired, rng):
    """Percentile interval of B - A from a two-level bootstrap: each resample draws seeds with replacement (the
    same seeds for both settings when paired, each setting's own otherwise), then images with replacement. The
    images are drawn once per resample for every seed of both settings: all models were tested on the same images,
    so drawing them anew for each seed would let the image noise average out over seeds, which it does not."""
    estimates = []
    for size in [min(BATCH, RESAMPLES - start) for start in range(0, RESAMPLES, BATCH)]:
        images = weights(rng.integers(0, a.shape[1], (size, a.shape[1])), a.shape[1])
        seeds_a = weights(rng.integers(0, len(a), (size, len(a))), len(a))
        seeds_b = seeds_a if paired else weights(rng.integers(0, len(b), (size, len(b))), len(b))
        estimates.append(((seeds_b @ b - seeds_a @ a) * images).sum(axis=1))
    tail = (1 - LEVEL) / 2
    return tuple(float(value) for value in np.quantile(np.concatenate(estimates), [tail, 1 - tail]))


def seed_level_tests(means_a, means_b, paired):
    """(name, p) of the t-test on the per-seed means and, when paired, the exact sign-flip p over the seeds (None
    unpaired). A difference of exactly 0 with no spread is no evidence of anything: p = 1."""
    if paired:
        differences = means_b - means_a
        if not differences.any():
            return "paired t-test over seeds", 1.0, 1.0
        t_test = stats.ttest_rel(means_b, means_a)
        return "paired t-test over seeds", nan_as_one(t_test.pvalue), sign_flip_p(differences, np.inf)
    if np.ptp(means_a) == np.ptp(means_b) == 0 and means_a[0] == means_b[0]:
        return "Welch's t-test over seeds", 1.0, None
    return "Welch's t-test over seeds", nan_as_one(stats.ttest_ind(means_b, means_a, equal_var=False).pvalue), None


def nan_as_one(p):
    return 1.0 if math.isnan(p) else float(p)


def t_test_power(seeds, difference, sd_a, sd_b, sd_paired):
    """Power of the two-sided test at ALPHA with this many seeds per setting: the paired t-test when sd_paired
    (the standard deviation of per-seed differences) is given, else Welch's with its Welch-Satterthwaite degrees
    of freedom; from the noncentral t distribution."""
    if sd_paired is not None:
        freedom, scale = seeds - 1, sd_paired / math.sqrt(seeds)
    else:
        variances = sd_a ** 2 + sd_b ** 2
        freedom = (seeds - 1) * variances ** 2 / (sd_a ** 4 + sd_b ** 4)
        scale = math.sqrt(variances / seeds)
    critical = stats.t.ppf(1 - ALPHA / 2, freedom)
    shift = abs(difference) / scale
    return float(stats.nct.sf(critical, freedom, shift) + stats.nct.cdf(-critical, freedom, shift))


def seeds_needed(difference, sd_a, sd_b, sd_paired=None):
    """The fewest seeds per setting for POWER (80 %) to detect `difference` with the seed-level t-test, taking the
    observed spread as the true one; None when nothing can (a difference of 0), MOST_SEEDS + 1 for "more than
    MOST_SEEDS". The observed difference of a few seeds is itself noisy, so this is a guide, not a promise."""
    spread = sd_paired if sd_paired is not None else math.hypot(sd_a, sd_b)
    if difference == 0:
        return None
    if spread == 0:
        return 2
    # Power grows with the seeds: double until it is reached, then bisect. (Far beyond, scipy's noncentral t
    # gives NaN, so never look much further than needed.)
    high = 2
    while t_test_power(high, difference, sd_a, sd_b, sd_paired) < POWER:
        if high == MOST_SEEDS:
            return MOST_SEEDS + 1
        high = min(2 * high, MOST_SEEDS)
    low = max(2, high // 2)
    while low < high:
        middle = (low + high) // 2
        if t_test_power(middle, difference, sd_a, sd_b, sd_paired) >= POWER:
            high = middle
        else:
            low = middle + 1
    return low


def spread(means, seeds):
    """{"sd", "worst_seed", "worst"} of a setting over its seeds (sample standard deviation; None for one seed)."""
    worst = int(np.argmin(means))
    return {"sd": float(np.std(means, ddof=1)) if len(means) > 1 else None, "worst_seed": seeds[worst],
            "worst": float(means[worst])}


def spread_p(means_a, means_b):
    """Levene's test (median-centred, Brown-Forsythe) that both settings spread equally over seeds; 1 when neither
    spreads at all, None with fewer than 3 seeds in a setting (two values lie equally far from their median, so
    there is nothing to test)."""
    if min(len(means_a), len(means_b)) < 3:
        return None
    if np.ptp(means_a) == np.ptp(means_b) == 0:
        return 1.0
    return nan_as_one(stats.levene(means_a, means_b).pvalue)


def compare(a, b, seeds_a, seeds_b, seed=0):
    """The comparison of B against A. a, b: per-image scores, seeds x images, the same images in the same columns;
    seeds_a, seeds_b: the seed of each row. The seed-level figures are None unless both have at least two seeds.
    Pairs by seed when both have the same seeds."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    image_a, image_b = a.mean(axis=0), b.mean(axis=0)
    image_interval, image_p = image_level(image_a, image_b, rng)
    result = {"difference": float(image_b.mean() - image_a.mean()), "mean_a": float(image_a.mean()),
              "mean_b": float(image_b.mean()), "images": a.shape[1], "seeds_a": list(seeds_a),
              "seeds_b": list(seeds_b), "image_interval": list(image_interval), "image_p": image_p,
              "wins_a": int((image_a > image_b).sum()), "wins_b": int((image_b > image_a).sum()),
              "ties": int((image_a == image_b).sum()), "spread_a": spread(a.mean(axis=1), list(seeds_a)),
              "spread_b": spread(b.mean(axis=1), list(seeds_b)), "paired": False, "seed_interval": None,
              "seed_test": None, "seed_p": None, "seed_sign_flip_p": None, "spread_p": None, "seeds_needed": None}
    if min(len(a), len(b)) < 2:
        return result
    paired = sorted(seeds_a) == sorted(seeds_b)
    if paired:  # rows in the same seed order
        b = b[[list(seeds_b).index(value) for value in seeds_a]]
    means_a, means_b = a.mean(axis=1), b.mean(axis=1)
    test, p, sign_flip_p = seed_level_tests(means_a, means_b, paired)
    sd_paired = float(np.std(means_b - means_a, ddof=1)) if paired else None
    result.update(paired=paired, seed_interval=list(two_level_interval(a, b, paired, rng)), seed_test=test,
                  seed_p=p, seed_sign_flip_p=sign_flip_p, spread_p=spread_p(means_a, means_b),
                  seeds_needed=seeds_needed(result["difference"], result["spread_a"]["sd"],
                                            result["spread_b"]["sd"], sd_paired))
    return result


def excludes_zero(interval):
    return interval[0] > 0 or interval[1] < 0


def is_shown(result):
    """Whether B differs from A: with seeds, the seed-aware interval excludes 0 and the seed-level p < ALPHA; with
    one seed per setting, the same of the image-level figures (which then hold for those two models only)."""
    if result["seed_interval"] is not None:
        return excludes_zero(result["seed_interval"]) and result["seed_p"] < ALPHA
    return excludes_zero(result["image_interval"]) and result["image_p"] < ALPHA
