"""Training recipes: the report's (train.py's defaults) and the improved from-scratch one measured against it at 8
epochs (README, "Recipes beyond the report"); a short label that says which recipe a run used."""

REPORT_RECIPE = {"learning_rate": 1e-4, "loss": "ce", "no_augment": False, "occlusion": False, "cutmix": 0.0,
                 "mixup": 0.0, "mixup_alpha": 0.4, "border": "pet", "schedule": "plateau", "warmup_epochs": 0,
                 "weight_decay": 0.0}
# From scratch: twice the report's learning rate, cosine after a one-epoch warm-up. On the 717-pair subset at
# 128 px, batch 8, 8 epochs, seeds 0-4 (README): test Dice 0.7987 ± 0.0066 against the report's 0.7868 ± 0.0132,
# a gain not shown at n = 5 (paired over seeds p = 0.125). With --no_augment as well, 0.8072 ± 0.0061, shown
# (p = 0.005); it is left out because 8 epochs of 335 images are too few to overfit, unlike --improved's 50 epochs
# on the full dataset, where dropping augmentation was not measured.
IMPROVED_RECIPE = {"learning_rate": 2e-4, "schedule": "cosine", "warmup_epochs": 1}
# Shown only beside the option they tune.
DEPENDENT = {"mixup_alpha": "mixup"}


def recipe_changes(args):
    """{flag: value} of the recipe flags where args (a dict) differ from the report's recipe."""
    changes = {key: args[key] for key, default in REPORT_RECIPE.items() if args.get(key, default) != default}
    return {key: value for key, value in changes.items() if key not in DEPENDENT or DEPENDENT[key] in changes}


def recipe_label(args):
    """'report' or the changed flags, e.g. 'loss=ce+dice, cutmix=0.5'; a pretrained encoder is named as such."""
    parts = [f"{key}={value}" for key, value in recipe_changes(args).items()]
    if args.get("encoder_weights"):
        parts.append(f"pretrained encoder={args['encoder_weights']}")
    return ", ".join(parts) or "report"
