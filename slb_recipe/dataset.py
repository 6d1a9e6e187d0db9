"""Input pipelines: CIFAR-10 binary files, ImageNet-style folders and scikit-learn's digits.

Each returns a batched mindspore Dataset of (image float32 NCHW, label int32). For data-parallel
training every rank passes its rank_id / rank_size and reads a disjoint shard.
"""
import glob
import os

import numpy as np
import mindspore.dataset as ds
import mindspore.dataset.transforms as transforms
import mindspore.dataset.vision as vision
from mindspore import dtype as mstype

DATASETS = ("cifar10", "imagenet", "digits")
CIFAR_MEAN, CIFAR_STD = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)
IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
DIGITS_MEAN, DIGITS_STD = (127.5,) * 3, (127.5,) * 3
# Share of the 1,797 digits kept for evaluation; the split is fixed so every run sees the same one.
DIGITS_EVAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


class DataPathError(ValueError):
    """data_path does not hold the files a data set needs; the message is one line."""


def create_dataset(dataset, data_path, do_train, batch_size, image_size, num_samples=0, shuffle=True,
                   num_parallel_workers=1, rank_id=0, rank_size=1):
    """Batched pipeline of the training (do_train) or evaluation split of `dataset`.

    num_samples > 0 keeps only that many samples (per rank). Training batches drop the
    incomplete last batch so every step sees one shape; evaluation keeps every sample.
    """
    _check_arguments(dataset, batch_size, image_size, num_samples, rank_id, rank_size)
    read = {"cifar10": _read_cifar10, "imagenet": _read_imagenet, "digits": _read_digits}[dataset]
    sharding = {"num_samples": num_samples or None, "shuffle": shuffle and do_train,
                "num_shards": rank_size if rank_size > 1 else None,
                "shard_id": rank_id if rank_size > 1 else None}
    data = read(data_path, do_train, sharding, num_parallel_workers)
    image_ops = _image_transforms(dataset, do_train, image_size)
    data = data.map(operations=image_ops, input_columns="image", num_parallel_workers=num_parallel_workers)
    data = data.map(operations=transforms.TypeCast(mstype.int32), input_columns="label",
                    num_parallel_workers=num_parallel_workers)
    return data.batch(batch_size, drop_remainder=do_train)


def _check_arguments(dataset, batch_size, image_size, num_samples, rank_id, rank_size):
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")
    for name, value, minimum in (("batch_size", batch_size, 1), ("image_size", image_size, 1),
                                 ("num_samples", num_samples, 0), ("rank_size", rank_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if not 0 <= rank_id < rank_size:
        raise ValueError(f"rank_id must be in [0, {rank_size}), got {rank_id!r}")


def _read_cifar10(data_path, do_train, sharding, num_parallel_workers):
    pattern = "data_batch_*.bin" if do_train else "test_batch.bin"
    if not glob.glob(os.path.join(data_path, pattern)):
        raise DataPathError(f"data_path '{data_path}' holds no CIFAR-10 binary file {pattern} "
                            "(expected the cifar-10-batches-bin folder: data_batch_1..5.bin, test_batch.bin)")
    return ds.Cifar10Dataset(data_path, usage="train" if do_train else "test",
                             num_parallel_workers=num_parallel_workers, **sharding)


def _read_imagenet(data_path, do_train, sharding, num_parallel_workers):
    split = "train" if do_train else "val"
    folder = os.path.join(data_path, split)
    if not os.path.isdir(folder) or not any(entry.is_dir() for entry in os.scandir(folder)):
        raise DataPathError(f"data_path '{data_path}' has no {split}/ folder of class subfolders "
                            "(expected train/<class>/*.JPEG and val/<class>/*.JPEG)")
    return ds.ImageFolderDataset(folder, num_parallel_workers=num_parallel_workers, decode=False, **sharding)


def _read_digits(_data_path, do_train, sharding, num_parallel_workers):
    images, labels = digits_split(do_train)
    return ds.NumpySlicesDataset({"image": images, "label": labels}, num_parallel_workers=num_parallel_workers,
                                 **sharding)


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


def _image_transforms(dataset, do_train, image_size):
    if dataset == "imagenet":
        if do_train:
            head = [vision.RandomCropDecodeResize(image_size, scale=(0.08, 1.0)), vision.RandomHorizontalFlip()]
        else:
            # Resize to the usual 256/224 ratio, then take the centre, as ImageNet evaluation does.
            head = [vision.Decode(), vision.Resize(int(image_size * 256 / 224)), vision.CenterCrop(image_size)]
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif dataset == "cifar10":
        head = [vision.RandomCrop(32, padding=4), vision.RandomHorizontalFlip()] if do_train else []
        head.append(vision.Resize(image_size))
        mean, std = CIFAR_MEAN, CIFAR_STD
    else:
        head = [vision.Resize(image_size)]
        mean, std = DIGITS_MEAN, DIGITS_STD
    return head + [vision.Normalize(mean=mean, std=std), vision.HWC2CHW()]
