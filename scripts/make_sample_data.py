"""Regenerate sample_data/: six small photos (two in a subfolder) and their masks, mirrored."""

from pathlib import Path

from batch_inpaint.synthetic import write_tree

NAMES = ["beach", "meadow", "dunes", "street/parking", "street/corner", "street/avenue"]

if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent / "sample_data"
    write_tree(root, NAMES, size=(640, 480), seed=7)
    print(f"wrote {len(NAMES)} pairs under {root}")
