import train
from recipes import IMPROVED_RECIPE, REPORT_RECIPE, recipe_label


def test_train_py_defaults_are_the_report_recipe():
    defaults = vars(train.get_args_parser().parse_args([]))
    assert {key: defaults[key] for key in REPORT_RECIPE} == REPORT_RECIPE
    assert recipe_label(defaults) == "report"


def test_the_label_names_what_differs_and_a_pretrained_encoder():
    args = {**REPORT_RECIPE, "cutmix": 0.5, "mixup_alpha": 0.2, "encoder_weights": "imagenet"}
    assert recipe_label(args) == "cutmix=0.5, pretrained encoder=imagenet"
    assert recipe_label({**args, "mixup": 1.0}) == "cutmix=0.5, mixup=1.0, mixup_alpha=0.2, pretrained encoder=imagenet"
    assert recipe_label({"loss": "ce"}) == "report", "older checkpoints lack the newer flags"


def test_the_improved_recipe_is_from_scratch_and_its_flags_parse_to_it():
    assert "encoder_weights" not in IMPROVED_RECIPE and set(IMPROVED_RECIPE) <= set(REPORT_RECIPE)
    parser = train.get_args_parser()
    flag = {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}
    flags = [part for key, value in IMPROVED_RECIPE.items() for part in (flag[key], str(value))]
    assert {key: getattr(parser.parse_args(flags), key) for key in IMPROVED_RECIPE} == IMPROVED_RECIPE
