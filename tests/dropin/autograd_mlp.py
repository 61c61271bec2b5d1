"""The autograd guide's MLP, written with operations only (no layers).

Two classes of 2-D points, split by the line y = 5x + 1, learned by a 2-3-2
perceptron with autograd.matmul / add_bias / relu / softmax_cross_entropy and
SGD updates applied while iterating autograd.backward.
"""
import sys

import numpy as np

from singa.tensor import Tensor
from singa import autograd
from singa import opt
from singa import tensor

import mnist_data

num_steps = int(sys.argv[1]) if len(sys.argv) > 1 else mnist_data.steps(300)

# two classes of noisy points on either side of y = 5x + 1
np.random.seed(0)
px = np.random.uniform(-1, 1, 400)
py = 5 * px + 1 + 2 * np.random.randn(400)
classes = (py > 5 * px + 1).astype(np.int32)
data = np.stack([px, py], axis=1).astype(np.float32)
label = np.eye(2, dtype=np.float32)[classes]  # one-hot rows

# --- the guide's snippets, as written -------------------------------------
w0 = Tensor(shape=(2, 3), requires_grad=True, stores_grad=True)
w0.gaussian(0.0, 0.1)
b0 = Tensor(shape=(1, 3), requires_grad=True, stores_grad=True)
b0.set_value(0.0)

w1 = Tensor(shape=(3, 2), requires_grad=True, stores_grad=True)
w1.gaussian(0.0, 0.1)
b1 = Tensor(shape=(1, 2), requires_grad=True, stores_grad=True)
b1.set_value(0.0)

inputs = Tensor(data=data)  # data matrix
target = Tensor(data=label) # label vector
autograd.training = True    # for training
sgd = opt.SGD(0.05)   # optimizer

losses = []
for i in range(10):
    x = autograd.matmul(inputs, w0) # matrix multiplication
    x = autograd.add_bias(x, b0)    # add the bias vector
    x = autograd.relu(x)            # ReLU activation operation

    x = autograd.matmul(x, w1)
    x = autograd.add_bias(x, b1)

    loss = autograd.softmax_cross_entropy(x, target)

    for p, g in autograd.backward(loss):
        sgd.update(p, g)
    losses.append(tensor.to_numpy(loss)[0])
# ---------------------------------------------------------------------------

for i in range(num_steps - 10):
    x = autograd.relu(autograd.add_bias(autograd.matmul(inputs, w0), b0))
    x = autograd.add_bias(autograd.matmul(x, w1), b1)
    loss = autograd.softmax_cross_entropy(x, target)
    for p, g in autograd.backward(loss):
        sgd.update(p, g)
    losses.append(tensor.to_numpy(loss)[0])
    if i % 50 == 0:
        print("step %d, loss = %.4f" % (i + 10, losses[-1]))

predicted = np.argmax(tensor.to_numpy(x), axis=1)
accuracy = float(np.mean(predicted == classes))
print("loss %.4f -> %.4f, training accuracy %.3f" % (losses[0], losses[-1], accuracy))
assert np.all(np.isfinite(losses)), losses
assert losses[-1] < losses[0], "loss did not decrease: %s" % losses
if num_steps >= 300:
    assert accuracy > 0.7, accuracy
