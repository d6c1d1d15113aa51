"""Make sample_data/ from photographs scikit-image ships under free licences (see sample_data/README.md).

    pip install -e '.[dev]' && python scripts/make_sample_data.py

Each mask covers one real object, drawn as a polygon and grown by a few pixels, as the provider advises
for masks that are not traced by hand.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent / "sample_data"
GROW = 7  # pixels

#: where the photo goes (under photos/ and masks/), the skimage.data function, the object's polygon
PHOTOS = {
    "coffee.jpg": ("coffee", "the spoon", [(398, 66), (424, 68), (420, 112), (398, 214), (408, 244), (410, 292),
                                          (394, 320), (362, 330), (330, 318), (322, 282), (334, 250), (362, 234),
                                          (380, 212), (398, 112)]),
    "astronaut.jpg": ("astronaut", "the shuttle model", [(395, 0), (440, 0), (445, 40), (460, 170), (462, 265),
                                                        (420, 285), (372, 282), (355, 225), (378, 190), (378, 60)]),
    "pad/rocket.jpg": ("rocket", "the lightning tower left of the rocket", [(193, 120), (207, 120), (210, 190),
                                                                            (215, 405), (168, 405), (188, 190)]),
}


def main() -> None:
    from skimage import data  # a development dependency only

    for folder in ("photos", "masks"):
        shutil.rmtree(ROOT / folder, ignore_errors=True)
    for rel, (name, _what, polygon) in PHOTOS.items():
        photo = Image.fromarray(getattr(data, name)())
        target = ROOT / "photos" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        photo.save(target, "JPEG", quality=90)
        mask = Image.new("L", photo.size, 0)
        ImageDraw.Draw(mask).polygon(polygon, fill=255)
        mask = mask.filter(ImageFilter.MaxFilter(2 * GROW + 1))
        mask_target = (ROOT / "masks" / rel).with_suffix(".png")
        mask_target.parent.mkdir(parents=True, exist_ok=True)
        mask.save(mask_target, optimize=True)
        print(f"{target.relative_to(ROOT)}: {photo.size[0]}x{photo.size[1]}, mask over {_what}")


if __name__ == "__main__":
    main()
