from PIL import Image

import analyze
import inference
from conftest import SAMPLE


def test_breed_tables_chart_and_gallery_from_a_per_image_csv_alone(trained, tmp_path):
    _, model = trained
    row = inference.main(inference.get_args_parser().parse_args([
        "--model", str(model), "--data_path", str(SAMPLE), "--device", "cpu", "--num_workers", "0",
        "--log_dir", str(tmp_path)]))
    out = analyze.main(analyze.get_args_parser().parse_args([row["per_image_csv"], "-k", "3", "--device", "cpu"]))
    text = (out / "breeds.md").read_text()
    assert "| cat |" in text and "| dog |" in text and "Abyssinian" in text
    assert Image.open(out / "dice_per_breed.png").size[1] > 200
    assert Image.open(out / "worst_images.png").size[0] > 300
