"""Recipe data pipelines and the ResNet18 model."""
import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms

from recipe_data import SCRIPTS_DIR, shared_data, write_fashion_mnist, write_image_folder
from slb_recipe.dataset import (DataPathError, EpochOrderSampler, create_dataset, digits_split,
                                fashion_mnist_split, idx_bytes, write_fashion_mnist_validation_split)
from slb_recipe.resnet import resnet18


@pytest.fixture(name="cifar10")
def cifar10_fixture(tmp_path_factory):
    return shared_data("cifar10", tmp_path_factory)


@pytest.fixture(name="imagenet")
def imagenet_fixture(tmp_path_factory):
    return shared_data("imagenet", tmp_path_factory)


def batches(data):
    return list(data.create_tuple_iterator(output_numpy=True))


def test_cifar10_batches_have_the_requested_shape_and_count(cifar10):
    for do_train, size in ((True, 16), (False, 24)):
        data = create_dataset("cifar10", cifar10, do_train, batch_size=4, image_size=size, num_samples=10)
        found = batches(data)
        # Training drops the incomplete last batch; evaluation keeps every sample.
        assert [len(images) for images, _ in found] == ([4, 4] if do_train else [4, 4, 2])
        images, labels = found[0]
        assert images.shape == (4, 3, size, size) and images.dtype == np.float32
        assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 10


def test_data_parallel_shards_are_disjoint(cifar10):
    shards = []
    for rank_id in range(2):
        data = create_dataset("cifar10", cifar10, False, batch_size=8, image_size=32, num_samples=8,
                              rank_id=rank_id, rank_size=2)
        shards.append({image.tobytes() for images, _ in batches(data) for image in images})
    assert len(shards[0]) == len(shards[1]) == 8 and not shards[0] & shards[1]


def test_missing_data_files_are_one_line_errors(tmp_path, cifar10):
    with pytest.raises(DataPathError) as raised:
        create_dataset("cifar10", str(tmp_path), True, batch_size=4, image_size=32)
    message = str(raised.value)
    assert "\n" not in message and str(tmp_path) in message and "data_batch_" in message
    with pytest.raises(DataPathError, match="train/"):
        create_dataset("imagenet", cifar10, True, batch_size=4, image_size=32)


def test_image_folder_reads_class_subfolders(imagenet):
    data = create_dataset("imagenet", imagenet, False, batch_size=12, image_size=16)
    (images, labels), = batches(data)
    assert images.shape == (12, 3, 16, 16) and sorted(set(labels.tolist())) == [0, 1, 2]


def test_image_folder_numbers_val_classes_as_train_does(tmp_path):
    root = write_image_folder(str(tmp_path), class_num=3, per_class=2, side=16)
    for name in os.listdir(tmp_path / "val" / "class_0"):
        os.remove(tmp_path / "val" / "class_0" / name)
    os.rmdir(tmp_path / "val" / "class_0")
    (images, labels), = batches(create_dataset("imagenet", root, False, batch_size=8, image_size=16))
    # Numbered per split, val's class_1 would have become label 0.
    assert sorted(labels.tolist()) == [1, 1, 2, 2]
    os.rename(tmp_path / "val" / "class_2", tmp_path / "val" / "class_9")
    with pytest.raises(DataPathError, match="has val/class_9, a class train/ does not have"):
        create_dataset("imagenet", root, False, batch_size=8, image_size=16)


def test_labels_beyond_class_num_are_refused_before_training(cifar10, imagenet):
    for dataset, path, class_num, labels in (("cifar10", cifar10, 9, 10), ("imagenet", imagenet, 2, 3),
                                             ("digits", "", 5, 10)):
        with pytest.raises(DataPathError) as raised:
            create_dataset(dataset, path, True, batch_size=4, image_size=16, class_num=class_num)
        assert f"outside class_num {class_num}: set class_num to at least {labels}" in str(raised.value)


def test_cifar10_training_files_must_all_be_there(tmp_path, cifar10):
    """MindSpore itself reads whichever data_batch_*.bin files exist."""
    for name in ("data_batch_1.bin", "data_batch_2.bin", "data_batch_4.bin", "test_batch.bin"):
        os.symlink(os.path.join(cifar10, name), tmp_path / name)
    with pytest.raises(DataPathError, match=r"lacks data_batch_3.bin, data_batch_5.bin of the five CIFAR-10"):
        create_dataset("cifar10", str(tmp_path), True, batch_size=4, image_size=16)
    assert create_dataset("cifar10", str(tmp_path), False, batch_size=4, image_size=16, num_samples=4)


def test_cifar10_file_of_the_wrong_size_is_refused(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(3073 * 5))
    for index in range(2, 6):
        os.symlink(path, tmp_path / f"data_batch_{index}.bin")
    with pytest.raises(DataPathError) as raised:
        create_dataset("cifar10", str(tmp_path), True, batch_size=4, image_size=16)
    assert str(path) in str(raised.value) and "has 15365 bytes, expected 10000 records of 3073 bytes" in \
        str(raised.value)


def test_undecodable_image_files_are_refused_before_the_pipeline(tmp_path):
    root = write_image_folder(str(tmp_path), class_num=2, per_class=3, side=16)
    truncated = tmp_path / "train" / "class_1" / "4.JPEG"
    truncated.write_bytes(truncated.read_bytes()[:300])  # this can kill MindSpore's decoder with SIGFPE
    (tmp_path / "train" / "class_0" / "empty.JPEG").write_bytes(b"")
    with pytest.raises(DataPathError) as raised:
        create_dataset("imagenet", root, True, batch_size=2, image_size=16)
    message = str(raised.value)
    assert "\n" not in message and "2 of 7 files" in message and "are not readable images" in message
    assert "empty.JPEG" in message or "4.JPEG" in message


def test_shuffled_order_is_a_function_of_seed_and_epoch():
    straight = EpochOrderSampler(101, seed=3, first_epoch=0, shuffle=True)
    orders = [list(straight) for _ in range(3)]
    assert orders[0] != orders[1] and sorted(orders[0]) == list(range(101))
    assert list(EpochOrderSampler(101, seed=3, first_epoch=2, shuffle=True)) == orders[2]
    assert list(EpochOrderSampler(101, seed=4, first_epoch=2, shuffle=True)) != orders[2]
    shards = [list(EpochOrderSampler(101, 3, 0, True, rank_id, 2)) for rank_id in range(2)]
    # Equal step counts on every rank; no row read twice.
    assert len(shards[0]) == len(shards[1]) == 50 and not set(shards[0]) & set(shards[1])
    assert list(EpochOrderSampler(101, 3, 0, False, num_samples=5)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet", "digits", "fashion_mnist"])
def test_every_loader_resumes_the_shuffled_order_of_its_epoch(dataset, tmp_path_factory):
    path = shared_data(dataset, tmp_path_factory)

    def labels_per_epoch(first_epoch, epochs):
        data = create_dataset(dataset, path, True, batch_size=4, image_size=16, num_samples=12, seed=7,
                              first_epoch=first_epoch)
        iterator = data.create_tuple_iterator(num_epochs=epochs, output_numpy=True)
        return [np.concatenate([labels for _, labels in iterator]).tolist() for _ in range(epochs)]

    straight = labels_per_epoch(0, 2)
    assert straight[0] != straight[1]
    assert labels_per_epoch(1, 1) == straight[1:]


def test_digits_are_split_once_into_disjoint_rgb_sets():
    train_images, train_labels = digits_split(True)
    eval_images, _ = digits_split(False)
    assert len(train_images) + len(eval_images) == 1797 and len(eval_images) == 359
    assert train_images.shape[1:] == (8, 8, 3) and train_images.dtype == np.uint8 and train_images.max() == 255
    assert np.array_equal(train_images[..., 0], train_images[..., 2])
    assert set(train_labels.tolist()) == set(range(10))
    data = create_dataset("digits", "", True, batch_size=8, image_size=32, num_samples=8)
    assert batches(data)[0][0].shape == (8, 3, 32, 32)


def test_create_dataset_validates_its_arguments():
    with pytest.raises(ValueError, match="dataset"):
        create_dataset("mnist", "", True, batch_size=8, image_size=32)
    with pytest.raises(ValueError, match="batch_size"):
        create_dataset("digits", "", True, batch_size=0, image_size=32)
    with pytest.raises(ValueError, match="rank_id"):
        create_dataset("digits", "", True, batch_size=8, image_size=32, rank_id=2, rank_size=2)


def test_resnet18_keeps_the_seed_layout_and_scales_with_width():
    net = resnet18(class_num=7, width=4)
    names = {param.name for param in net.get_parameters()}
    assert {"conv1.weight", "bn1.gamma", "layer1.0.conv1.weight", "layer1.0.bn1d.moving_mean",
            "layer2.0.down_sample_layer.0.weight", "layer4.1.bn2d.beta", "end_point.weight"} <= names
    convs = [cell for _, cell in net.cells_and_names() if isinstance(cell, ms.nn.Conv2d)]
    assert len(convs) == 20  # 17 3x3/7x7 convolutions of ResNet18 plus 3 down-sampling 1x1s
    assert net.end_point.weight.shape == (7, 32)
    net.set_train(False)
    out = net(ms.Tensor(np.zeros((2, 3, 16, 16), np.float32)))
    assert out.shape == (2, 7)
    assert resnet18(width=64).end_point.weight.shape == (10, 512)


def test_resnet18_rejects_unknown_options():
    with pytest.raises(ValueError, match="conv_init"):
        resnet18(conv_init="Orthogonal")
    with pytest.raises(ValueError, match="width"):
        resnet18(width=0)


def test_fashion_mnist_idx_files_become_rgb_batches(tmp_path_factory):
    folder = shared_data("fashion_mnist", tmp_path_factory)
    images, labels = fashion_mnist_split(folder, True)
    with gzip.open(os.path.join(folder, "train-images-idx3-ubyte.gz")) as stream:
        grey = np.frombuffer(stream.read()[16:], np.uint8).reshape(-1, 28, 28)
    # The grey image repeated as three equal channels, labels in file order.
    assert images.shape == (40, 28, 28, 3) and (images == grey[..., None]).all()
    assert labels.dtype == np.int32 and len(labels) == 40
    (batch_images, batch_labels), = batches(create_dataset("fashion_mnist", folder, False, batch_size=32,
                                                           image_size=32, num_samples=20))
    assert batch_images.shape == (20, 3, 32, 32) and batch_images.dtype == np.float32
    assert batch_labels.tolist() == fashion_mnist_split(folder, False)[1].tolist()


def test_fashion_mnist_reads_decompressed_files_too(tmp_path):
    folder = write_fashion_mnist(str(tmp_path / "gz"), train_count=6, test_count=4)
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in os.listdir(folder):
        with gzip.open(os.path.join(folder, name)) as stream:
            (plain / name[:-len(".gz")]).write_bytes(stream.read())
    for split in (True, False):
        assert all((a == b).all() for a, b in zip(fashion_mnist_split(str(plain), split),
                                                  fashion_mnist_split(folder, split)))


def _one_line_error(folder, match):
    with pytest.raises(DataPathError) as raised:
        create_dataset("fashion_mnist", folder, True, batch_size=4, image_size=16)
    message = str(raised.value)
    assert "\n" not in message and match in message, message
    return message


def test_fashion_mnist_bad_files_are_one_line_errors(tmp_path):
    folder = write_fashion_mnist(str(tmp_path), train_count=6, test_count=4)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    good_images, good_labels = images.read_bytes(), labels.read_bytes()

    images.write_bytes(good_images[:len(good_images) // 2])
    _one_line_error(folder, "cannot be read")  # a cut gzip stream

    with gzip.open(images, "wb") as stream:
        stream.write(gzip.decompress(good_images)[:-100])
    assert "declares shape (6, 28, 28) (4704 bytes) but holds 4604 bytes" in _one_line_error(folder, "truncated")

    with gzip.open(images, "wb") as stream:
        stream.write(idx_bytes(np.zeros((6, 28), np.uint8)))
    _one_line_error(folder, "is not an idx file of 3-dimensional unsigned bytes")

    images.write_bytes(good_images)
    with gzip.open(labels, "wb") as stream:
        stream.write(idx_bytes(np.zeros(5, np.uint8)))
    _one_line_error(folder, "holds 6 images, train-labels-idx1-ubyte 5 labels")

    labels.write_bytes(good_labels)
    images.unlink()
    assert "dataset-fashion-mnist" in _one_line_error(folder, "holds no Fashion-MNIST file train-images-idx3-ubyte.gz")


def test_validation_split_holds_out_the_last_training_images(tmp_path):
    source = write_fashion_mnist(str(tmp_path / "source"), train_count=10, test_count=4)
    output = str(tmp_path / "split")
    assert write_fashion_mnist_validation_split(source, output, validation_count=3) == (7, 3)
    images, labels = fashion_mnist_split(source, True)
    split_train, split_validation = fashion_mnist_split(output, True), fashion_mnist_split(output, False)
    # Training and validation are the training split cut in two, in file order; no test image enters.
    assert (split_train[0] == images[:7]).all() and split_train[1].tolist() == labels[:7].tolist()
    assert (split_validation[0] == images[7:]).all() and split_validation[1].tolist() == labels[7:].tolist()


@pytest.mark.parametrize("count", [0, 10, 2.5, True])
def test_validation_split_refuses_counts_that_leave_a_split_empty(tmp_path, count):
    source = write_fashion_mnist(str(tmp_path / "source"), train_count=10, test_count=4)
    with pytest.raises(ValueError, match=rf"validation_count must be an int in \[1, 9\] .*got {count!r}"):
        write_fashion_mnist_validation_split(source, str(tmp_path / "split"), count)
    assert not (tmp_path / "split").exists()


def test_validation_split_refuses_training_files_that_disagree(tmp_path):
    source = write_fashion_mnist(str(tmp_path / "source"), train_count=10, test_count=4)
    with gzip.open(tmp_path / "source" / "train-labels-idx1-ubyte.gz", "wb") as stream:
        stream.write(idx_bytes(np.zeros(9, np.uint8)))
    with pytest.raises(DataPathError, match="holds 10 images, train-labels-idx1-ubyte 9 labels"):
        write_fashion_mnist_validation_split(source, str(tmp_path / "split"), 3)
    assert not (tmp_path / "split").exists()


def test_validation_split_script_writes_the_files_or_says_why_not(tmp_path):
    source = write_fashion_mnist(str(tmp_path / "source"), train_count=10, test_count=4)
    script = [sys.executable, os.path.join(SCRIPTS_DIR, "fashion_mnist_validation_split.py"), "--data_path"]
    done = subprocess.run(script + [source, "--output", str(tmp_path / "split"), "--validation_count", "4"],
                          capture_output=True, text=True, check=True)
    assert "6 training images, 4 validation images" in done.stdout
    assert len(fashion_mnist_split(str(tmp_path / "split"), False)[1]) == 4
    failed = subprocess.run(script + [str(tmp_path / "missing"), "--output", str(tmp_path / "other")],
                            capture_output=True, text=True, check=False)
    assert failed.returncode != 0 and failed.stderr.count("\n") == 1
    assert "holds no Fashion-MNIST file train-images-idx3-ubyte.gz" in failed.stderr
