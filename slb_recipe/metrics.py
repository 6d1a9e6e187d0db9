"""The training loss and the top-1 / top-5 evaluation of a network."""
import mindspore as ms
import mindspore.nn as nn

TOPK_METRICS = ("top_1_accuracy", "top_5_accuracy")


def loss_function(config):
    smoothing = config.label_smooth_factor if config.use_label_smooth else 0.0
    return nn.CrossEntropyLoss(reduction="mean", label_smoothing=smoothing)


def topk_metrics(class_num):
    # With fewer than five classes every label is within the top five.
    return {"top_1_accuracy": nn.Top1CategoricalAccuracy(),
            "top_5_accuracy": nn.TopKCategoricalAccuracy(min(5, class_num))}


def evaluate(net, dataset, config):
    """top_1_accuracy and top_5_accuracy of net on dataset, in inference mode."""
    net.set_train(False)
    model = ms.Model(net, loss_fn=loss_function(config), metrics=topk_metrics(config.class_num))
    result = model.eval(dataset, dataset_sink_mode=False)
    return {name: float(result[name]) for name in TOPK_METRICS}
