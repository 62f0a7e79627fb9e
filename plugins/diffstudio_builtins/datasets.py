"""Built-in datasets: scikit-learn's digits, a folder of images, 2-D toy sets, and MNIST,
Fashion-MNIST and CIFAR-10 through torchvision.

Only specs are declared here (no torch import); the loaders live in
:mod:`diffstudio.engine.datasets` and are imported when a dataset is first built.
"""

from __future__ import annotations

from diffstudio import Contribution, Param, hookimpl

_MODULE = "diffstudio.engine.datasets"


def _torchvision_params(native_size: int) -> tuple[Param, ...]:
    return (
        Param("root", "path", None,
              help="folder holding the files (empty: ~/.cache/diffstudio/datasets)"),
        Param("download", "bool", False, help="download the files if they are not in root"),
        Param("size", "int", 0, minimum=0, maximum=512,
              help=f"resize to size x size (0: native {native_size}x{native_size})"),
        Param("train", "bool", True, help="training split (off: test split)"),
        Param("max_images", "int", 0, minimum=0, help="keep the first N images (0: all)"),
    )


@hookimpl
def diffstudio_datasets() -> list[Contribution]:
    return [
        Contribution(
            kind="dataset",
            id="digits",
            display_name="Digits 8x8 (scikit-learn)",
            description="1797 handwritten digits 0-9, 8x8 grayscale; ships with scikit-learn.",
            factory=f"{_MODULE}.digits:load_digits",
            params=(
                Param("size", "int", 8, minimum=1, maximum=256,
                      help="image side; other than 8 resizes bilinearly"),
            ),
            tags=("image",),
        ),
        Contribution(
            kind="dataset",
            id="image-folder",
            display_name="Image folder",
            description="Every PNG/JPEG/BMP/GIF/WebP/TIFF under a folder, resized and "
                        "centre-cropped; unreadable files are skipped and listed.",
            factory=f"{_MODULE}.image_folder:load_image_folder",
            params=(
                Param("root", "path", None, help="folder of images (required; searched "
                                                 "recursively)"),
                Param("size", "int", 32, minimum=4, maximum=1024,
                      help="side of the square images, in pixels"),
                Param("channels", "choice", "rgb", choices=("rgb", "grayscale"),
                      help="colour (3 channels) or grayscale (1)"),
                Param("labels_from_subfolders", "bool", False,
                      help="each first-level subfolder is a class"),
                Param("max_images", "int", 0, minimum=0, help="keep at most N images (0: all)"),
            ),
            tags=("image",),
        ),
        Contribution(
            kind="dataset",
            id="toy2d",
            display_name="2-D toy sets",
            description="Points in the plane: the 0.8/0.2 Gaussian mixture, two moons, "
                        "swiss roll, rings.",
            factory=f"{_MODULE}.toy2d:load_toy2d",
            params=(
                Param("name", "choice", "mixture",
                      choices=("mixture", "two-moons", "swiss-roll", "rings"),
                      help="which distribution"),
                Param("num_points", "int", 10000, minimum=1, maximum=10_000_000,
                      help="number of points drawn"),
                Param("seed", "int", 0, minimum=0, maximum=2**31 - 1,
                      help="random seed of the draw"),
                Param("noise", "float", 0.05, minimum=0.0, maximum=5.0,
                      help="std of Gaussian noise added (not to the mixture)"),
            ),
            tags=("points",),
        ),
        Contribution(
            kind="dataset",
            id="mnist",
            display_name="MNIST (torchvision)",
            description="70000 handwritten digits, 28x28 grayscale; needs the files or "
                        "download.",
            factory=f"{_MODULE}.torchvision_sets:load_mnist",
            params=_torchvision_params(28),
            tags=("image",),
        ),
        Contribution(
            kind="dataset",
            id="fashion-mnist",
            display_name="Fashion-MNIST (torchvision)",
            description="70000 clothing images in 10 classes, 28x28 grayscale; needs the files "
                        "or download.",
            factory=f"{_MODULE}.torchvision_sets:load_fashion_mnist",
            params=_torchvision_params(28),
            tags=("image",),
        ),
        Contribution(
            kind="dataset",
            id="cifar10",
            display_name="CIFAR-10 (torchvision)",
            description="60000 colour photos in 10 classes, 32x32; needs the files or download.",
            factory=f"{_MODULE}.torchvision_sets:load_cifar10",
            params=_torchvision_params(32),
            tags=("image",),
        ),
    ]
