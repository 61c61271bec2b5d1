"""Character-level language model with `layer.LSTM` (SINGA's char-RNN example style).

    singax run char_rnn.py [TEXT_FILE] [--steps N] [--seq-length T] [--eager]

Without TEXT_FILE it trains on a small built-in text. The hidden state is carried
from batch to batch (truncated back-propagation), kept in tensors that the model
creates in `initialize` and refreshes with `copy_data`.
"""
import argparse

import numpy as np

from singa import autograd
from singa import device
from singa import layer
from singa import model
from singa import opt
from singa import tensor

import mnist_data

TEXT = ("the quick brown fox jumps over the lazy dog. "
        "a stitch in time saves nine. "
        "all that glitters is not gold. ") * 40


class CharRNN(model.Model):

    def __init__(self, vocab_size, hidden_size=32):
        super(CharRNN, self).__init__()
        self.rnn = layer.LSTM(vocab_size, hidden_size)
        self.cat = layer.Cat()
        self.reshape1 = layer.Reshape()
        self.dense = layer.Linear(hidden_size, vocab_size)
        self.reshape2 = layer.Reshape()
        self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()
        self.optimizer = opt.SGD(0.5, momentum=0.9)
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size

    def reset_states(self, dev):
        self.hx.to_device(dev)
        self.cx.to_device(dev)
        self.hx.set_value(0.0)
        self.cx.set_value(0.0)

    def initialize(self, inputs):
        batchsize = inputs[0].shape[0]
        self.hx = tensor.Tensor((batchsize, self.hidden_size))
        self.cx = tensor.Tensor((batchsize, self.hidden_size))
        self.reset_states(inputs[0].device)

    def forward(self, inputs):
        x, hx, cx = self.rnn(inputs, (self.hx, self.cx))
        self.hx.copy_data(hx)
        self.cx.copy_data(cx)
        x = self.cat(x)
        x = self.reshape1(x, (-1, self.hidden_size))
        return self.dense(x)

    def train_one_batch(self, x, y):
        out = self.forward(x)
        y = self.reshape2(y, (-1, 1))
        loss = self.softmax_cross_entropy(out, y)
        self.optimizer(loss)
        return out, loss

    def get_states(self):
        ret = super().get_states()
        ret[self.hx.name] = self.hx
        ret[self.cx.name] = self.cx
        return ret

    def set_states(self, states):
        self.hx.copy_from(states[self.hx.name])
        self.cx.copy_from(states[self.cx.name])
        super().set_states(states)


class Data(object):
    """Characters as indices, cut into `batch_size` parallel streams."""

    def __init__(self, text, batch_size, seq_length):
        self.vocab = sorted(set(text))
        self.vocab_size = len(self.vocab)
        self.char_to_idx = {c: i for i, c in enumerate(self.vocab)}
        ids = np.array([self.char_to_idx[c] for c in text], dtype=np.int32)
        per_stream = (len(ids) - 1) // batch_size
        num_batches = per_stream // seq_length
        self.x = ids[:batch_size * per_stream].reshape(batch_size, per_stream)
        self.y = ids[1:batch_size * per_stream + 1].reshape(batch_size, per_stream)
        self.seq_length = seq_length
        self.num_batches = num_batches

    def batch(self, b):
        s = slice(b * self.seq_length, (b + 1) * self.seq_length)
        return self.x[:, s], self.y[:, s]


def convert(x_batch, y_batch, vocab_size, dev):
    """One-hot input tensors, one per time step, and time-major int labels."""
    inputs = []
    for t in range(x_batch.shape[1]):
        onehot = np.zeros((x_batch.shape[0], vocab_size), dtype=np.float32)
        onehot[np.arange(x_batch.shape[0]), x_batch[:, t]] = 1
        inputs.append(tensor.from_numpy(onehot, dev))
    labels = tensor.from_numpy(np.ascontiguousarray(y_batch.T).reshape(-1).astype(np.int32), dev)
    return inputs, labels


def train(text, steps, batch_size=8, seq_length=16, hidden_size=32, use_graph=True):
    dev = device.get_default_device()
    data = Data(text, batch_size, seq_length)
    m = CharRNN(data.vocab_size, hidden_size)
    m.graph(use_graph, False)
    m.train()
    losses = []
    for step in range(steps):
        b = step % data.num_batches
        if b == 0 and step > 0:
            m.reset_states(dev)
        inputs, labels = convert(*data.batch(b), data.vocab_size, dev)
        out, loss = m(inputs, labels)
        losses.append(tensor.to_numpy(loss)[0])
        if step % 20 == 0:
            print("step %d loss %.4f" % (step, losses[-1]), flush=True)

    # greedy prediction of the next characters of the first batch, in eval mode
    m.eval()
    inputs, labels = convert(*data.batch(0), data.vocab_size, dev)
    m.reset_states(dev)
    logits = tensor.to_numpy(m(inputs))
    accuracy = float(np.mean(np.argmax(logits, axis=1) == tensor.to_numpy(labels)))
    return losses, accuracy, autograd.training


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="char-RNN with layer.LSTM (drop-in test)")
    parser.add_argument("data", nargs="?", help="a text file (default: built-in text)")
    parser.add_argument("--steps", type=int, default=mnist_data.steps(120))
    parser.add_argument("--seq-length", type=int, default=16, dest="seq_length")
    parser.add_argument("--eager", action="store_true", help="graph mode off")
    args = parser.parse_args()
    if args.data:
        with open(args.data) as f:
            text = f.read()
    else:
        print("no text file given: training on the built-in text")
        text = TEXT
    losses, accuracy, training = train(text, args.steps, seq_length=args.seq_length,
                                       use_graph=not args.eager)
    print("loss %.4f -> %.4f, next-char accuracy %.3f" % (losses[0], losses[-1], accuracy))
    assert not training  # model.eval() switched autograd.training off
    assert np.all(np.isfinite(losses)), losses
    k = max(1, len(losses) // 4)
    assert np.mean(losses[-k:]) < np.mean(losses[:k]), "loss did not decrease: %s" % losses
    if args.steps >= 100:
        assert accuracy > 0.3, accuracy
