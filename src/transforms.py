"""The report's training augmentation (SegmentationTransform), the same geometry on image, mask and trimap."""
import albumentations as A
import cv2


class RandomRotate90(A.RandomRotate90):
    """albumentations' RandomRotate90 with the same random draws and outputs, rotating with cv2.rotate: the copy
    that makes np.rot90's strided view contiguous is about 15x slower (the cached loader's costliest step)."""

    CODES = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}

    def apply(self, img, factor, **params):
        return img if factor == 0 else cv2.rotate(img, self.CODES[factor])


class SegmentationTransform:
    """Flip, rotate-90, grid distortion and brightness/contrast, as in the report.

    Optional random occlusion (CoarseDropout on the image only) is the report's proposed improvement.
    """

    def __init__(self, occlusion=False, seed=None):
        steps = [
            A.HorizontalFlip(p=0.5),
            RandomRotate90(p=0.5),
            A.GridDistortion(p=0.5),
            A.RandomBrightnessContrast(p=0.2),
        ]
        if occlusion:
            steps.append(A.CoarseDropout(num_holes_range=(1, 6), hole_height_range=(0.1, 0.25),
                                         hole_width_range=(0.1, 0.25), fill=0, p=0.5))
        self.compose = A.Compose(steps, additional_targets={"trimap": "mask"}, seed=seed)

    def set_random_seed(self, seed):
        self.compose.set_random_seed(seed)

    def __call__(self, image, mask, trimap):
        out = self.compose(image=image, mask=mask, trimap=trimap)
        return out["image"], out["mask"], out["trimap"]
