"""A character-level language model with `layer.LSTM` (Model API, graph mode).

    python examples/char_rnn.py --data my_text.txt   # your own text file (UTF-8)
    python examples/char_rnn.py                      # SYNTHETIC sentences (see below)
    python examples/char_rnn.py --steps 10           # a quick check

The text is cut into `batch-size` parallel streams read `seq-length` characters at a
time; the LSTM's hidden state carries over from one batch to the next (truncated
back-propagation through time). Each epoch reports the next-character accuracy on
the last 10% of the text and prints a sample. Without `--data` the script trains on
SYNTHETIC text made from a small grammar, and says so.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _common
from singax import autograd, device, layer, model, opt, tensor

WORDS = {
    "subject": ["the cat", "a dog", "my friend", "the old man", "a small bird", "the teacher"],
    "verb": ["sees", "likes", "follows", "finds", "draws", "remembers"],
    "object": ["the river", "a red ball", "the city", "an apple", "the moon", "a green tree"],
    "end": [".", " today.", " again.", " at night."],
}


def synthetic_text(n_chars: int, seed: int = 0) -> str:
    """Sentences 'subject verb object end' drawn at random from WORDS."""
    rng = np.random.default_rng(seed)
    parts, size = [], 0
    while size < n_chars:
        s = " ".join(WORDS[k][rng.integers(len(WORDS[k]))] for k in ("subject", "verb", "object"))
        s += WORDS["end"][rng.integers(len(WORDS["end"]))] + " "
        parts.append(s)
        size += len(s)
    return "".join(parts)[:n_chars]


def read_text(path: str) -> str:
    """A UTF-8 text file (undecodable bytes become U+FFFD)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if len(set(text)) < 2:
        raise ValueError(f"{path!r} needs at least two different characters")
    return text


class CharRNN(model.Model):
    """One-hot characters -> LSTM -> linear over the vocabulary, at every time step."""

    def __init__(self, vocab_size: int, hidden_size: int):
        super().__init__()
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.lstm = layer.LSTM(vocab_size, hidden_size)
        self.cat = layer.Cat(axis=0)
        self.dense = layer.Linear(vocab_size)
        self.softmax_cross_entropy = layer.SoftMaxCrossEntropy()
        self.hx = self.cx = None

    def reset_states(self, batch_size: int, dev) -> None:
        """Zero hidden and cell states for `batch_size` streams.

        The tensors are created once and then reset in place: a compiled step keeps
        using the Tensor objects it was traced with.
        """
        shape = (batch_size, self.hidden_size)
        if self.hx is None or self.hx.shape != shape:
            self.hx = tensor.Tensor(shape, dev, requires_grad=False, stores_grad=False)
            self.cx = tensor.Tensor(shape, dev, requires_grad=False, stores_grad=False)
        self.hx.set_value(0.0)
        self.cx.set_value(0.0)

    def forward(self, xs):
        """`xs`: a list of T one-hot (B, V) Tensors; returns (T*B, V) logits, time-major."""
        if self.hx is None:
            self.reset_states(xs[0].shape[0], xs[0].device)
        hs, h, c = self.lstm(xs, (self.hx, self.cx))
        # carry the state to the next batch as values (no gradient across batches)
        self.hx.copy_data(h)
        self.cx.copy_data(c)
        return self.dense(self.cat(hs))

    def train_one_batch(self, xs, y):
        out = self.forward(xs)
        loss = self.softmax_cross_entropy(out, y)
        self.optimizer(loss)
        return out, loss

    def set_optimizer(self, optimizer) -> None:
        self.optimizer = optimizer

    def get_states(self) -> dict:
        # the hidden state is not saved: a restored model starts from zeros
        return {k: v for k, v in super().get_states().items() if k not in ("hx", "cx")}


class Streams:
    """Character ids cut into `batch_size` parallel streams, served `seq_length` at a time."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int):
        per_stream = (len(ids) - 1) // batch_size
        if per_stream < seq_length:
            raise ValueError(f"char_rnn: {len(ids)} characters are too few for batch size "
                             f"{batch_size} x sequence length {seq_length}")
        self.x = ids[:batch_size * per_stream].reshape(batch_size, per_stream)
        self.y = ids[1:batch_size * per_stream + 1].reshape(batch_size, per_stream)
        self.seq_length, self.num_batches = seq_length, per_stream // seq_length

    def __iter__(self):
        for b in range(self.num_batches):
            s = slice(b * self.seq_length, (b + 1) * self.seq_length)
            # labels time-major, matching the order of the concatenated outputs
            yield self.x[:, s], np.ascontiguousarray(self.y[:, s].T).reshape(-1)


def one_hot_steps(x: np.ndarray, vocab_size: int) -> list[np.ndarray]:
    """(B, T) ids -> T arrays of one-hot (B, V)."""
    eye = np.eye(vocab_size, dtype=np.float32)
    return [eye[x[:, t]] for t in range(x.shape[1])]


def evaluate(net: CharRNN, streams: Streams, txs: list, dev) -> tuple[float, float]:
    """(mean loss, next-character accuracy) on `streams`, in eval mode."""
    net.eval()
    net.reset_states(streams.x.shape[0], dev)
    losses, correct, total = [], 0, 0
    for xb, yb in streams:
        for t, a in zip(txs, one_hot_steps(xb, net.vocab_size)):
            t.copy_from_numpy(a)
        logits = tensor.to_numpy(net(txs))
        logp = logits - logits.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        losses.append(-logp[np.arange(len(yb)), yb].mean())
        correct += int((logits.argmax(1) == yb).sum())
        total += len(yb)
    net.train()
    return float(np.mean(losses)), correct / max(1, total)


def sample(net: CharRNN, vocab: list[str], start: str, length: int, dev, seed: int = 0,
           temperature: float = 0.7) -> str:
    """Generate `length` characters after `start`, one at a time (eager, batch of one)."""
    rng = np.random.default_rng(seed)
    index = {ch: i for i, ch in enumerate(vocab)}
    autograd.training = False
    h = tensor.Tensor((1, net.hidden_size), dev, requires_grad=False)
    c = tensor.Tensor((1, net.hidden_size), dev, requires_grad=False)
    h.set_value(0.0)
    c.set_value(0.0)
    eye = np.eye(len(vocab), dtype=np.float32)
    text, ch = start, start[0]
    for i in range(len(start) - 1 + length):
        x = tensor.from_numpy(eye[index.get(ch, 0)][None], dev)
        _, h, c = net.lstm([x], (h, c))
        logits = tensor.to_numpy(net.dense(h))[0] / temperature
        if i + 1 < len(start):   # still reading the prompt
            ch = start[i + 1]
            continue
        p = np.exp(logits - logits.max())
        ch = vocab[rng.choice(len(vocab), p=p / p.sum())]
        text += ch
    autograd.training = True
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, metavar="FILE", help="a UTF-8 text file; synthetic text if omitted")
    p.add_argument("--synthetic-size", type=int, default=60000, help="characters of synthetic text [60000]")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seq-length", type=int, default=32)
    _common.add_training_args(p, checkpoint="char_rnn.zip", plot="char_rnn.png",
                              epochs=3, batch_size=32, lr=0.5)
    args = p.parse_args(argv)
    if args.data:
        try:
            text = read_text(args.data)
        except (OSError, ValueError) as err:
            print(f"error: cannot use --data: {err}", file=sys.stderr)
            return 2
        source = args.data
    else:
        print("=" * 78 + "\nWARNING: no --data file given: training on SYNTHETIC sentences from a tiny\n"
              "grammar. Pass --data FILE (any UTF-8 text, e.g. a book) to model real text.\n"
              + "=" * 78, flush=True)
        text = synthetic_text(args.synthetic_size, args.seed)
        source = "SYNTHETIC text"
    vocab = sorted(set(text))
    lookup = {ch: i for i, ch in enumerate(vocab)}
    ids = np.fromiter((lookup[ch] for ch in text), np.int32, len(text))
    split = int(len(ids) * 0.9)
    try:
        train = Streams(ids[:split], args.batch_size, args.seq_length)
        # same batch size as training, so both share the carried-state tensors
        valid = Streams(ids[split:], args.batch_size, args.seq_length)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"data: {source}, {len(text)} characters, vocabulary of {len(vocab)}", flush=True)

    dev = device.get_default_device()
    dev.SetRandSeed(args.seed)
    net = CharRNN(len(vocab), args.hidden)
    net.set_optimizer(opt.SGD(lr=args.lr, momentum=0.9))
    txs = [tensor.Tensor((args.batch_size, len(vocab)), dev) for _ in range(args.seq_length)]
    ty = tensor.Tensor((args.batch_size * args.seq_length,), dev, tensor.int32)
    net.reset_states(args.batch_size, dev)
    # compile() takes a list of single Tensors, but forward takes a list of time steps:
    # as in SINGA's char-RNN, set the mode instead. The first batch then runs eagerly
    # (creating the parameters) and every later batch runs the compiled step.
    net.graph(not args.eager, sequential=False)
    net.train()
    print(f"device: {dev}, graph mode: {not args.eager}, {args.batch_size} streams x "
          f"{args.seq_length} characters, lr {args.lr}", flush=True)

    step_losses, accuracies = [], []
    total = train.num_batches if args.steps is None else min(train.num_batches, args.steps)
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        net.reset_states(args.batch_size, dev)
        progress = _common.Progress(total, f"epoch {epoch}", args.plain)
        losses, pending = [], []
        for step, (xb, yb) in enumerate(train):
            if step == total:
                break
            for t, a in zip(txs, one_hot_steps(xb, len(vocab))):
                t.copy_from_numpy(a)
            ty.copy_from_numpy(yb)
            _, loss = net(txs, ty)
            pending.append(loss)
            if len(pending) == 10 or step + 1 == total:
                values = [float(tensor.to_numpy(v)[0]) for v in pending]
                losses += values
                progress.update(len(values), values)
                pending = []
        progress.close()
        train_time = time.time() - start
        if not _common.finite(losses):
            print(f"epoch {epoch}: the loss is not finite; lower --lr", file=sys.stderr)
            return 1
        valid_loss, accuracy = evaluate(net, valid, txs, dev)
        step_losses += losses
        accuracies.append(accuracy)
        print(f"epoch {epoch}: train loss {np.mean(losses):.4f}, validation loss {valid_loss:.4f}, "
              f"next-character accuracy {100 * accuracy:.2f}%, {len(losses)} steps in "
              f"{train_time:.1f} s", flush=True)
        print("  sample: " + repr(sample(net, vocab, text[:8], 80, dev, seed=epoch)), flush=True)
        _common.save_checkpoint(net, args.checkpoint)
    _common.save_plot(args.plot, step_losses, accuracies,
                      f"char-RNN (LSTM {args.hidden}) on {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
