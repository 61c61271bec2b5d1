"""The autograd guide's CNN: SINGA-2 style layers from `autograd`, a hand-written loop.

Layers are built eagerly with their input sizes (`autograd.Conv2d(1, 32, 3, ...)`),
called like functions, and every parameter is updated with `sgd.update(p, gp)`
while iterating `autograd.backward(loss)`.
"""
import numpy as np

from singa import autograd
from singa import device
from singa import opt
from singa import tensor

import mnist_data

batch_sz = 16
batch_number = 2  # a small fixed subset, visited every epoch
epochs = mnist_data.steps(6) // batch_number

x_train, labels = mnist_data.load(batch_sz * batch_number)
y_train = np.eye(10, dtype=np.float32)[labels]  # one-hot targets

dev = device.get_default_device()
sgd = opt.SGD(lr=0.003)

# --- the guide's layers and forward, as written ---------------------------
conv1 = autograd.Conv2d(1, 32, 3, padding=1, bias=False)
bn1 = autograd.BatchNorm2d(32)
pooling1 = autograd.MaxPool2d(3, 1, padding=1)
conv21 = autograd.Conv2d(32, 16, 3, padding=1)
conv22 = autograd.Conv2d(32, 16, 3, padding=1)
bn2 = autograd.BatchNorm2d(32)
linear = autograd.Linear(32 * 28 * 28, 10)
pooling2 = autograd.AvgPool2d(3, 1, padding=1)


def forward(x, t):
    # x is the input data (a batch of images)
    # t is the label vector (a batch of integers)
    y = conv1(x)           # Conv layer
    y = autograd.relu(y)   # ReLU operation
    y = bn1(y)             # BN layer
    y = pooling1(y)        # Pooling Layer

    # two parallel convolution layers
    y1 = conv21(y)
    y2 = conv22(y)
    y = autograd.cat((y1, y2), 1)  # cat operation
    y = autograd.relu(y)           # ReLU operation
    y = bn2(y)
    y = pooling2(y)

    y = autograd.flatten(y)        # flatten operation
    y = linear(y)                  # Linear layer
    loss = autograd.softmax_cross_entropy(y, t)  # operation
    return loss, y


first = []
autograd.training = True
for epoch in range(epochs):
    for i in range(batch_number):
        inputs = tensor.Tensor(device=dev, data=x_train[
                               i * batch_sz:(1 + i) * batch_sz], stores_grad=False)
        targets = tensor.Tensor(device=dev, data=y_train[
                                i * batch_sz:(1 + i) * batch_sz], requires_grad=False, stores_grad=False)

        loss, y = forward(inputs, targets) # forward the net

        for p, gp in autograd.backward(loss):  # auto backward
            sgd.update(p, gp)
        # ---------------------------------------------------------------------
        value = tensor.to_numpy(loss)[0]
        if i == 0:
            first.append(value)
        print("epoch %d batch %d loss %.4f" % (epoch, i, value))

print("loss on the first batch, per epoch:", ["%.4f" % v for v in first])
assert np.all(np.isfinite(first))
assert first[-1] < first[0], "loss did not decrease: %s" % first
