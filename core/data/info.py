"""What a model needs to know about a dataset: class names, input shape, normalisation.

The builtin datasets' metadata lives here, so that it can be read without loading any image.
"""
from __future__ import annotations

from dataclasses import dataclass



DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")
SPLITS: tuple[str, str] = ("train", "test")
IMAGEFOLDER_PREFIX = "imagefolder:"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                    "dog", "frog", "horse", "ship", "truck")


_CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
    "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
    "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")          # torchvision's FashionMNIST.classes
_DIGIT_CLASSES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset: class names, input shape (C,H,W), normalisation."""

    name: str
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


_BUILTIN_INFO: dict[str, DatasetInfo] = {
    # digits mean/std: computed from the fixed train part (value/16), rounded.
    "digits": DatasetInfo("digits", _DIGIT_CLASSES, (1, 8, 8), (0.3056,), (0.3761,)),
    "mnist": DatasetInfo("mnist", _DIGIT_CLASSES, (1, 28, 28), (0.1307,), (0.3081,)),
    "fashion_mnist": DatasetInfo("fashion_mnist", FASHION_MNIST_CLASSES, (1, 28, 28),
                                 (0.2860,), (0.3530,)),
    "cifar10": DatasetInfo("cifar10", _CIFAR10_CLASSES, (3, 32, 32),
                           (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetInfo("cifar100", _CIFAR100_CLASSES, (3, 32, 32),
                            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
