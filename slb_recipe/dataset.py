"""Input pipelines: CIFAR-10 binary files, ImageNet-style folders, Fashion-MNIST's idx files and
scikit-learn's digits.

Each returns a batched mindspore Dataset of (image float32 NCHW, label int32). For data-parallel
training every rank passes its rank_id / rank_size and reads a disjoint shard.
"""
import glob
import gzip
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import mindspore.dataset as ds
import mindspore.dataset.transforms as transforms
import mindspore.dataset.vision as vision
from mindspore import dtype as mstype
from PIL import Image

# The four files Fashion-MNIST's authors publish (gzip-compressed idx), per split: images, labels.
FASHION_MNIST_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# idx header: two zero bytes, the element type (0x08: unsigned byte), then the number of dimensions.
IDX_UBYTE = 0x08
# Share of the 1,797 digits kept for evaluation; the split is fixed so every run sees the same one.
DIGITS_EVAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_CLASSES = 10
# The binary CIFAR-10 layout: a label byte then a 32x32x3 image, 10,000 records per file.
CIFAR_RECORD_BYTES = 1 + 32 * 32 * 3
CIFAR_RECORDS_PER_FILE = 10000
CIFAR_TRAIN_FILES = tuple(f"data_batch_{index}.bin" for index in range(1, 6))


@dataclass(frozen=True)
class DataSet:
    """What the recipe needs to know of a data set (the records are DATA_SETS, at the end).

    read(data_path, do_train, num_parallel_workers): the split as an unbatched, unshuffled mindspore
    Dataset of uint8 RGB 'image' (HWC, or encoded bytes where `head` decodes) and 'label' columns,
    and the number of classes it has; mean, std: per channel of the training images, in pixel units
    (0..255); head(do_train, image_size): the image operations before normalisation (decoding,
    augmentation, resizing).
    """
    read: object
    mean: tuple
    std: tuple
    head: object


class DataPathError(ValueError):
    """data_path does not hold the files a data set needs; the message is one line."""


def create_dataset(dataset, data_path, do_train, batch_size, image_size, num_samples=0, shuffle=True,
                   num_parallel_workers=1, rank_id=0, rank_size=1, seed=0, first_epoch=0, class_num=None):
    """Batched pipeline of the training (do_train) or evaluation split of `dataset`.

    num_samples > 0 keeps only that many samples (per rank). Training batches drop the
    incomplete last batch so every step sees one shape; evaluation keeps every sample. A shuffled
    training split visits its samples in an order that depends only on seed and the epoch
    (counted from first_epoch), so a resumed run sees the data of an uninterrupted one.
    class_num, when given, must exceed every label of the split.
    """
    _check_arguments(dataset, batch_size, image_size, num_samples, rank_id, rank_size)
    kind = DATA_SETS[dataset]
    data, label_count = kind.read(data_path, do_train, num_parallel_workers)
    if class_num is not None and label_count > class_num:
        raise DataPathError(f"the {dataset} data{_at(data_path)} has labels 0..{label_count - 1}, outside "
                            f"class_num {class_num}: set class_num to at least {label_count}")
    data.use_sampler(EpochOrderSampler(data.get_dataset_size(), seed, first_epoch, shuffle and do_train,
                                       rank_id, rank_size, num_samples))
    image_ops = kind.head(do_train, image_size) + [vision.Normalize(mean=kind.mean, std=kind.std), vision.HWC2CHW()]
    data = data.map(operations=image_ops, input_columns="image", num_parallel_workers=num_parallel_workers)
    data = data.map(operations=transforms.TypeCast(mstype.int32), input_columns="label",
                    num_parallel_workers=num_parallel_workers)
    return data.batch(batch_size, drop_remainder=do_train)


def create_split(config, do_train, rank_id=0, rank_size=1, first_epoch=0):
    """The training or evaluation pipeline the recipe's config describes; training starts at first_epoch's order."""
    return create_dataset(
        config.dataset, config.data_path, do_train, config.batch_size,
        config.train_image_size if do_train else config.eval_image_size,
        num_samples=config.train_num_samples if do_train else config.eval_num_samples,
        shuffle=config.shuffle, num_parallel_workers=config.num_parallel_workers,
        rank_id=rank_id, rank_size=rank_size, seed=config.seed, first_epoch=first_epoch,
        class_num=config.class_num)


def _at(data_path):
    return f" at '{data_path}'" if data_path else ""


class EpochOrderSampler(ds.Sampler):
    """The rows one rank reads per epoch: a permutation drawn from (seed, epoch), or the stored order.

    MindSpore copies the sampler into every iterator it builds and asks it for indices once per
    epoch, so counting those requests from first_epoch tells the epoch. Shards take every
    rank_size-th row of the same order, after cutting the rows that would give ranks unequal
    step counts; num_samples (0: all) then keeps the first rows of the shard.
    """

    def __init__(self, row_count, seed, first_epoch, shuffle, rank_id=0, rank_size=1, num_samples=0):
        self.row_count = row_count
        self.seed = seed
        self.shuffle = shuffle
        self.rank_id, self.rank_size = rank_id, rank_size
        shard_size = row_count // rank_size
        self.take = min(num_samples, shard_size) if num_samples else shard_size
        self.next_epoch = first_epoch
        super().__init__(num_samples=self.take)

    def order(self, epoch):
        """Row indices of this rank in `epoch` (0-based, counted over the whole run)."""
        rows = np.random.default_rng((self.seed, epoch)).permutation(self.row_count) if self.shuffle \
            else np.arange(self.row_count)
        shard = rows[:self.row_count - self.row_count % self.rank_size][self.rank_id::self.rank_size]
        return shard[:self.take]

    def __iter__(self):
        epoch = self.next_epoch
        self.next_epoch += 1
        return iter(self.order(epoch).tolist())


def _check_arguments(dataset, batch_size, image_size, num_samples, rank_id, rank_size):
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")
    for name, value, minimum in (("batch_size", batch_size, 1), ("image_size", image_size, 1),
                                 ("num_samples", num_samples, 0), ("rank_size", rank_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if not 0 <= rank_id < rank_size:
        raise ValueError(f"rank_id must be in [0, {rank_size}), got {rank_id!r}")


def _read_cifar10(data_path, do_train, num_parallel_workers):
    """CIFAR-10 binary files, each checked to be whole; returns (dataset, label count)."""
    pattern = "data_batch_*.bin" if do_train else "test_batch.bin"
    paths = sorted(glob.glob(os.path.join(data_path, pattern)))
    if not paths:
        raise DataPathError(f"data_path '{data_path}' holds no CIFAR-10 binary file {pattern} "
                            "(expected the cifar-10-batches-bin folder: data_batch_1..5.bin, test_batch.bin)")
    if do_train:
        missing = [name for name in CIFAR_TRAIN_FILES if os.path.join(data_path, name) not in paths]
        if missing:  # else MindSpore would train on the files that are there, without a word
            raise DataPathError(f"data_path '{data_path}' lacks {', '.join(missing)} of the five CIFAR-10 training "
                                "files data_batch_1..5.bin: incomplete download or extraction")
        extra = [os.path.basename(path) for path in paths if os.path.basename(path) not in CIFAR_TRAIN_FILES]
        if extra:  # MindSpore would train on these too
            raise DataPathError(f"data_path '{data_path}' holds {', '.join(extra)} besides the five CIFAR-10 training "
                                "files data_batch_1..5.bin, and MindSpore's reader would train on it too: move it out")
    label_count = max(_cifar10_label_count(path) for path in paths)
    data = ds.Cifar10Dataset(data_path, usage="train" if do_train else "test", shuffle=False,
                             num_parallel_workers=num_parallel_workers)
    return data, label_count


def _cifar10_label_count(path):
    """1 + the largest label of a CIFAR-10 file, after checking the file holds whole records."""
    size = os.path.getsize(path)
    if size != CIFAR_RECORDS_PER_FILE * CIFAR_RECORD_BYTES:
        raise DataPathError(f"CIFAR-10 file '{path}' has {size} bytes, expected {CIFAR_RECORDS_PER_FILE} "
                            f"records of {CIFAR_RECORD_BYTES} bytes ({CIFAR_RECORDS_PER_FILE * CIFAR_RECORD_BYTES}): "
                            "truncated or not CIFAR-10")
    records = np.memmap(path, dtype=np.uint8, mode="r").reshape(CIFAR_RECORDS_PER_FILE, CIFAR_RECORD_BYTES)
    return int(records[:, 0].max()) + 1


def _read_imagenet(data_path, do_train, num_parallel_workers):
    """One class list for both splits: train/'s subfolders, sorted, numbered from 0."""
    classes = _class_folders(data_path, "train")
    split = "train" if do_train else "val"
    split_classes = classes if do_train else _class_folders(data_path, "val")
    unseen = sorted(set(split_classes) - set(classes))
    if unseen:
        raise DataPathError(f"data_path '{data_path}' has val/{unseen[0]}, a class train/ does not have: "
                            "val/ may only hold classes of train/")
    folder = os.path.join(data_path, split)
    check_images(folder, split_classes, num_parallel_workers)
    indexing = {name: classes.index(name) for name in split_classes}
    data = ds.ImageFolderDataset(folder, shuffle=False, class_indexing=indexing, decode=False,
                                 num_parallel_workers=num_parallel_workers)
    return data, len(classes)


def _class_folders(data_path, split):
    folder = os.path.join(data_path, split)
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir()) if os.path.isdir(folder) else []
    if not classes:
        raise DataPathError(f"data_path '{data_path}' has no {split}/ folder of class subfolders "
                            "(expected train/<class>/*.JPEG and val/<class>/*.JPEG)")
    return classes


def check_images(folder, classes, num_parallel_workers=1):
    """Decode every file of the class folders with PIL, and refuse the split if any fails.

    MindSpore's decoder fails mid-epoch on a corrupt file, and a truncated JPEG can even kill the
    process with SIGFPE, so the whole split is checked before a pipeline is built.
    """
    paths = [entry.path for name in classes for entry in os.scandir(os.path.join(folder, name)) if entry.is_file()]
    with ThreadPoolExecutor(max_workers=num_parallel_workers) as pool:
        problems = [(path, problem) for path, problem in zip(paths, pool.map(_image_problem, paths)) if problem]
    if problems:
        path, problem = problems[0]
        raise DataPathError(f"{len(problems)} of {len(paths)} files in '{folder}' are not readable images, "
                            f"e.g. '{path}' ({problem}): remove or replace them")


def _image_problem(path):
    """Why PIL cannot decode the image at path, or None."""
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            # A reduced-size decode still reads the whole compressed stream, at a fraction of the cost.
            image.draft("RGB", (64, 64))
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return " ".join(str(error).split()) or type(error).__name__
    return None


def _read_digits(_data_path, do_train, num_parallel_workers):
    images, labels = digits_split(do_train)
    data = ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=False,
                                 num_parallel_workers=num_parallel_workers)
    return data, DIGITS_CLASSES


def digits_split(do_train):
    """scikit-learn's 8x8 digits as uint8 RGB images (HWC) and labels, fixed train/eval split."""
    from sklearn.datasets import load_digits  # optional dependency, needed only for this data set
    digits = load_digits()
    # Pixel values are 0..16; spread them over 0..255 and repeat the grey channel as RGB.
    grey = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
    eval_count = int(len(images) * DIGITS_EVAL_FRACTION)
    chosen = order[eval_count:] if do_train else order[:eval_count]
    return images[chosen], digits.target[chosen].astype(np.int32)


def _read_fashion_mnist(data_path, do_train, num_parallel_workers):
    images, labels = fashion_mnist_split(data_path, do_train)
    data = ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=False,
                                 num_parallel_workers=num_parallel_workers)
    return data, int(labels.max()) + 1


def fashion_mnist_split(data_path, do_train):
    """Fashion-MNIST's training or test split from data_path as uint8 RGB images (HWC) and labels.

    Reads the authors' gzip-compressed idx files, or the same files decompressed (no .gz).
    """
    grey, labels = _fashion_mnist_files(data_path, do_train)
    return np.repeat(grey[..., None], 3, axis=-1), labels.astype(np.int32)


def _fashion_mnist_files(data_path, do_train):
    """The split's grey images [N, 28, 28] and labels [N] as stored (uint8), checked to agree in N."""
    image_name, label_name = FASHION_MNIST_FILES[do_train]
    grey = read_idx(_idx_path(data_path, image_name), dimensions=3)
    labels = read_idx(_idx_path(data_path, label_name), dimensions=1)
    if len(grey) != len(labels):
        raise DataPathError(f"Fashion-MNIST files in '{data_path}' disagree: {image_name} holds {len(grey)} "
                            f"images, {label_name} {len(labels)} labels")
    return grey, labels


def _idx_path(data_path, name):
    for candidate in (name + ".gz", name):
        path = os.path.join(data_path, candidate)
        if os.path.isfile(path):
            return path
    raise DataPathError(f"data_path '{data_path}' holds no Fashion-MNIST file {name}.gz (expected the four idx "
                        "files; 'apt-get install dataset-fashion-mnist' puts them in /usr/share/datasets/fashion-mnist)")


def read_idx(path, dimensions):
    """The unsigned-byte array of an idx file (gzip-compressed when its name ends in .gz).

    The header, the size it declares and the bytes present must agree, so a truncated or foreign
    file is refused here rather than mid-epoch.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            content = stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataPathError(f"idx file '{path}' cannot be read ({' '.join(str(error).split())}): "
                            "truncated or not gzip") from error
    header_size = 4 + 4 * dimensions
    if len(content) < header_size or content[:4] != bytes([0, 0, IDX_UBYTE, dimensions]):
        raise DataPathError(f"'{path}' is not an idx file of {dimensions}-dimensional unsigned bytes "
                            f"(header {content[:4].hex() or 'missing'}, expected {bytes([0, 0, IDX_UBYTE, dimensions]).hex()})")
    shape = tuple(int(size) for size in np.frombuffer(content, ">u4", dimensions, offset=4))
    if 0 in shape:
        raise DataPathError(f"idx file '{path}' declares shape {shape}: an empty dimension, so it holds no data")
    expected = int(np.prod(shape))
    if len(content) - header_size != expected:
        raise DataPathError(f"idx file '{path}' declares shape {shape} ({expected} bytes) but holds "
                            f"{len(content) - header_size} bytes: truncated or damaged")
    return np.frombuffer(content, np.uint8, offset=header_size).reshape(shape)


def idx_bytes(array):
    """An array of unsigned bytes in the idx format: zero, zero, type 0x08, dimensions, sizes (big-endian)."""
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_fashion_mnist_validation_split(data_path, output, validation_count):
    """Fashion-MNIST's four files in `output` with the last `validation_count` training images as the
    evaluation split and the rest as the training split; the test images are left out.

    Settings chosen on this split never see the test set, which stays for the one final measurement.
    Returns (training count, validation count).
    """
    images, labels = _fashion_mnist_files(data_path, True)
    if isinstance(validation_count, bool) or not isinstance(validation_count, int) or \
            not 0 < validation_count < len(labels):
        raise ValueError(f"validation_count must be an int in [1, {len(labels) - 1}] (the training split holds "
                         f"{len(labels)} images), got {validation_count!r}")
    os.makedirs(output, exist_ok=True)
    cut = len(labels) - validation_count
    for do_train, rows in ((True, slice(0, cut)), (False, slice(cut, None))):
        for name, array in zip(FASHION_MNIST_FILES[do_train], (images, labels)):
            with gzip.open(os.path.join(output, name + ".gz"), "wb") as stream:
                stream.write(idx_bytes(array[rows]))
    return cut, validation_count


def _imagenet_head(do_train, image_size):
    if do_train:
        return [vision.RandomCropDecodeResize(image_size, scale=(0.08, 1.0)), vision.RandomHorizontalFlip()]
    # Resize to the usual 256/224 ratio, then take the centre, as ImageNet evaluation does.
    return [vision.Decode(), vision.Resize(int(image_size * 256 / 224)), vision.CenterCrop(image_size)]


def _cifar10_head(do_train, image_size):
    augment = [vision.RandomCrop(32, padding=4), vision.RandomHorizontalFlip()] if do_train else []
    return augment + [vision.Resize(image_size)]


def _resize_head(_do_train, image_size):
    return [vision.Resize(image_size)]


DATA_SETS = {
    "cifar10": DataSet(_read_cifar10, (125.3, 123.0, 113.9), (63.0, 62.1, 66.7), _cifar10_head),
    "imagenet": DataSet(_read_imagenet, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), _imagenet_head),
    "digits": DataSet(_read_digits, (127.5,) * 3, (127.5,) * 3, _resize_head),
    "fashion_mnist": DataSet(_read_fashion_mnist, (72.9,) * 3, (90.0,) * 3, _resize_head),
}
# The dataset option's values.
DATASETS = tuple(DATA_SETS)
