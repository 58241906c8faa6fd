import numpy as np
import pytest
from scipy import stats

import significance

SEEDS = [0, 1, 2, 3, 4]
# Fixed offsets with a sample standard deviation of exactly 1, and a different set for the other setting.
UNIT_A = np.array([1.2, -0.8, 0.3, -1.1, 0.4])
UNIT_B = np.array([-0.5, 1.3, -0.9, 0.2, -0.1])
UNIT_A, UNIT_B = ((unit - unit.mean()) / unit.std(ddof=1) for unit in (UNIT_A, UNIT_B))


def settings(seed_sd, gain=0.01, images=200, offsets_b=UNIT_B):
    """Per-image scores, seeds x images: every image of a seed shifted by that seed's offset (sd seed_sd over the
    seeds), B better than A by `gain` on every image before the offsets."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.9, images)
    image_noise = rng.normal(0, 0.02, (2, len(SEEDS), images))
    a = base + seed_sd * UNIT_A[:, None] + image_noise[0]
    b = base + gain + seed_sd * offsets_b[:, None] + image_noise[1]
    return a, b


def test_seed_noise_larger_than_the_gain_is_seen_by_the_seed_aware_interval_only():
    result = significance.compare(*settings(seed_sd=0.03), SEEDS, SEEDS)
    assert significance.excludes_zero(result["image_interval"]) and result["image_p"] < 0.05
    assert not significance.excludes_zero(result["seed_interval"]) and result["seed_p"] > 0.05
    assert not significance.is_shown(result) and result["paired"]


def test_small_seed_noise_leaves_both_intervals_clear_of_zero():
    result = significance.compare(*settings(seed_sd=0.001), SEEDS, SEEDS)
    assert significance.excludes_zero(result["image_interval"]) and significance.excludes_zero(result["seed_interval"])
    assert result["seed_interval"][0] > 0 and result["seed_p"] < 0.05 and significance.is_shown(result)


def test_identical_settings_differ_by_nothing_with_p_one():
    a, _ = settings(seed_sd=0.03)
    result = significance.compare(a, a.copy(), SEEDS, SEEDS)
    assert result["difference"] == 0 and result["seed_interval"] == [0, 0] and result["image_interval"] == [0, 0]
    assert result["seed_p"] == result["image_p"] == result["seed_sign_flip_p"] == result["spread_p"] == 1.0
    assert result["seeds_needed"] is None and not significance.is_shown(result)


def test_pairing_by_seed_removes_noise_that_both_settings_share():
    """The same offsets in both settings (what a shared seed can give): paired, they cancel; with other seed
    numbers on one side the settings are compared unpaired and the offsets count."""
    a, b = settings(seed_sd=0.03, offsets_b=UNIT_A)
    paired = significance.compare(a, b, SEEDS, SEEDS)
    unpaired = significance.compare(a, b, SEEDS, [5, 6, 7, 8, 9])
    assert paired["paired"] and paired["seed_interval"][0] > 0 and paired["seed_test"].startswith("paired")
    assert not unpaired["paired"] and unpaired["seed_interval"][0] < 0 < unpaired["seed_interval"][1]
    assert unpaired["seed_test"].startswith("Welch") and unpaired["seed_sign_flip_p"] is None


def test_seeds_listed_in_another_order_are_paired_by_their_number():
    a, b = settings(seed_sd=0.03, offsets_b=UNIT_A)
    in_order = significance.compare(a, b, SEEDS, SEEDS)
    shuffled = significance.compare(a, b[::-1], SEEDS, SEEDS[::-1])
    assert shuffled["seed_p"] == pytest.approx(in_order["seed_p"]) and shuffled["paired"]


def test_the_seed_level_tests_are_scipys_on_the_seed_means():
    a, b = settings(seed_sd=0.01)
    result = significance.compare(a, b, SEEDS, SEEDS)
    assert result["seed_p"] == pytest.approx(stats.ttest_rel(b.mean(axis=1), a.mean(axis=1)).pvalue)
    welch = significance.compare(a, b, SEEDS, [9, 8, 7, 6, 5])
    assert welch["seed_p"] == pytest.approx(stats.ttest_ind(b.mean(axis=1), a.mean(axis=1), equal_var=False).pvalue)


def test_the_exact_sign_flip_over_five_seeds_cannot_go_below_two_in_thirty_two():
    a, b = settings(seed_sd=0.0001, gain=0.05)
    result = significance.compare(a, b, SEEDS, SEEDS)
    assert result["seed_sign_flip_p"] == pytest.approx(2 / 32) and result["seed_p"] < 1e-4


def test_seeds_needed_match_the_power_tables():
    """Standard tables (two-sided, 5 %, 80 % power): effect size 1 needs 10 pairs for the paired t-test, 17 per
    group for the two-sample t-test."""
    assert significance.seeds_needed(1.0, 1.0, 1.0, sd_paired=1.0) == 10
    assert significance.seeds_needed(1.0, 1.0, 1.0) == 17
    assert significance.seeds_needed(0.5, 1.0, 1.0, sd_paired=1.0) == 34
    assert significance.seeds_needed(1e-9, 1.0, 1.0) == significance.MOST_SEEDS + 1
    assert significance.seeds_needed(0.0, 1.0, 1.0) is None and significance.seeds_needed(0.01, 0.0, 0.0) == 2


def test_a_setting_that_spreads_much_more_over_seeds_is_told_apart_by_levenes_test():
    tight = 0.7 + 0.001 * UNIT_A
    assert significance.spread_p(tight, 0.7 + 0.05 * UNIT_B) < 0.05
    assert significance.spread_p(tight, 0.7 + 0.001 * UNIT_B) > 0.05
    assert significance.spread_p(tight[:2], 0.7 + 0.05 * UNIT_B) is None


def test_spread_names_the_worst_seed():
    a, _ = settings(seed_sd=0.03)
    result = significance.compare(a, a + 0.01, SEEDS, [10, 11, 12, 13, 14])
    assert result["spread_a"]["worst_seed"] == 3 and result["spread_b"]["worst_seed"] == 13
    assert result["spread_a"]["sd"] == pytest.approx(0.03, abs=0.002)


def test_one_seed_per_setting_gives_the_image_level_part_alone():
    a, b = settings(seed_sd=0.0)
    result = significance.compare(a[:1], b[:1], [0], [0])
    assert result["seed_interval"] is None and result["seed_p"] is None and result["seeds_needed"] is None
    assert significance.excludes_zero(result["image_interval"]) and significance.is_shown(result)


def test_the_draws_follow_the_seed():
    a, b = settings(seed_sd=0.03)
    first, again = (significance.compare(a, b, SEEDS, SEEDS, seed=3) for _ in range(2))
    other = significance.compare(a, b, SEEDS, SEEDS, seed=4)
    assert first == again and first["seed_interval"] != other["seed_interval"]
