"""The autograd guide's MLP built with the Model API, trained in graph mode.

Placeholders `tx`/`ty` are compiled once, every batch is copied into them with
`copy_from_numpy`, and `model(tx, ty)` runs `train_one_batch`. Ends with the
guide's checkpoint save/load, checked by reloading into a fresh model.
"""
import os
import shutil
import sys
import tempfile

import numpy as np

from singa import device
from singa import layer
from singa import model
from singa import opt
from singa import tensor

import mnist_data


class MLP(model.Model):  # a subclass of Model

    def __init__(self, data_size=10, perceptron_size=100, num_classes=10):
        super(MLP, self).__init__()

        # operators, layers and other objects
        self.relu = layer.ReLU()
        self.linear1 = layer.Linear(perceptron_size)
        self.linear2 = layer.Linear(num_classes)
        self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()

    def forward(self, inputs):  # the forward function
        y = self.linear1(inputs)
        y = self.relu(y)
        y = self.linear2(y)
        return y

    def train_one_batch(self, x, y):
        out = self.forward(x)
        loss = self.softmax_cross_entropy(out, y)
        self.optimizer(loss)
        return out, loss

    def set_optimizer(self, optimizer):  # attach an optimizer
        self.optimizer = optimizer


batch_size = 64
num_classes = 10
data_size = 28 * 28
num_train_batch = int(sys.argv[1]) if len(sys.argv) > 1 else mnist_data.steps(60)

images, labels = mnist_data.load(batch_size * 8)
images = images.reshape(len(images), data_size)
onehot = np.eye(num_classes, dtype=np.int32)[labels]

dev = device.get_default_device()
# --- the guide's training snippet ----------------------------------------
model = MLP(data_size=data_size)
sgd = opt.SGD(lr=0.05, momentum=0.9, weight_decay=1e-5)
model.set_optimizer(sgd)
# input and target placeholders
tx = tensor.Tensor((batch_size, data_size), dev, tensor.float32)
ty = tensor.Tensor((batch_size, num_classes), dev, tensor.int32)
# compile the model before training
model.compile([tx], is_train=True, use_graph=True, sequential=False)

losses = []
for b in range(num_train_batch):
    # the next mini-batch (the 8 batches are visited in turn)
    k = b % 8
    x, y = images[k * batch_size:(k + 1) * batch_size], onehot[k * batch_size:(k + 1) * batch_size]

    # copy the data into the input tensors
    tx.copy_from_numpy(x)
    ty.copy_from_numpy(y)

    # train on one batch
    out, loss = model(tx, ty)
    losses.append(tensor.to_numpy(loss)[0])
# ---------------------------------------------------------------------------
print("loss %.4f -> %.4f over %d batches" % (losses[0], losses[-1], len(losses)))
assert np.all(np.isfinite(losses)), losses
assert np.mean(losses[-2:]) < losses[0], "loss did not decrease: %s" % losses

model.eval()
tx.copy_from_numpy(images[:batch_size])
logits = tensor.to_numpy(model(tx))
accuracy = float(np.mean(np.argmax(logits, axis=1) == labels[:batch_size]))
print("accuracy on the first batch: %.3f" % accuracy)

# --- checkpoint save / load, as in the guide --------------------------------
folder = tempfile.mkdtemp()
try:
    checkpointpath = os.path.join(folder, "checkpoint.zip")
    model.save_states(fpath=checkpointpath)

    fresh = MLP(data_size=data_size)
    fresh.set_optimizer(opt.SGD(lr=0.05, momentum=0.9, weight_decay=1e-5))
    fresh.compile([tx], is_train=True, use_graph=True, sequential=False)
    if os.path.exists(checkpointpath):
        fresh.load_states(fpath=checkpointpath)
    fresh.eval()
    reloaded = tensor.to_numpy(fresh(tx))
    np.testing.assert_allclose(reloaded, logits, rtol=1e-5, atol=1e-5)
    print("checkpoint reloaded: outputs match")
finally:
    shutil.rmtree(folder)
