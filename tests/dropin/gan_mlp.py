"""A vanilla GAN with MLPs (SINGA's GAN example style) on MNIST digits.

The generator step is `train_one_batch` (the model's compiled step); the
discriminator step is an extra method, `train_one_batch_dis`, which SINGA runs
eagerly. Both update only their own network, calling `optimizer.apply` for the
parameters they own.

    singax run gan_mlp.py [--steps N] [--graph]
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


class VanillaGAN(model.Model):

    def __init__(self, noise_size=32, feature_size=784, hidden_size=64):
        super(VanillaGAN, self).__init__()
        self.noise_size = noise_size
        self.feature_size = feature_size
        self.gen_net_fc_0 = layer.Linear(hidden_size)
        self.gen_net_relu_0 = layer.ReLU()
        self.gen_net_fc_1 = layer.Linear(feature_size)
        self.gen_net_sigmoid_1 = layer.Sigmoid()
        self.dis_net_fc_0 = layer.Linear(hidden_size)
        self.dis_net_relu_0 = layer.ReLU()
        self.dis_net_fc_1 = layer.Linear(1)
        self.dis_net_sigmoid_1 = layer.Sigmoid()
        self.binary_cross_entropy = layer.BinaryCrossEntropy()

    def forward(self, x):
        # generator followed by the discriminator: creates every parameter at compile
        return self.forward_dis(self.forward_gen(x))

    def forward_gen(self, x):
        y = self.gen_net_relu_0(self.gen_net_fc_0(x))
        return self.gen_net_sigmoid_1(self.gen_net_fc_1(y))

    def forward_dis(self, x):
        y = self.dis_net_relu_0(self.dis_net_fc_0(x))
        return self.dis_net_sigmoid_1(self.dis_net_fc_1(y))

    def train_one_batch(self, x, y):
        # generator step: make the discriminator say "real" (y = 1) to fakes
        out = self.forward(x)
        loss = self.binary_cross_entropy(out, y)
        for p, g in autograd.backward(loss):
            if p.name.startswith("gen_net"):
                self.optimizer.apply(p.name, p, g)
        return out, loss

    def train_one_batch_dis(self, x, y):
        # discriminator step on real and fake images
        out = self.forward_dis(x)
        loss = self.binary_cross_entropy(out, y)
        for p, g in autograd.backward(loss):
            if p.name.startswith("dis_net"):
                self.optimizer.apply(p.name, p, g)
        return out, loss

    def set_optimizer(self, optimizer):
        self.optimizer = optimizer


def snapshot(m, prefix):
    return {k: tensor.to_numpy(v) for k, v in m.get_params().items() if k.startswith(prefix)}


def train(steps, batch_size=32, use_graph=False, seed=0):
    dev = device.get_default_device()
    dev.SetRandSeed(seed)
    rng = np.random.RandomState(seed)
    images, _ = mnist_data.load(1024, seed=seed)
    images = images.reshape(len(images), -1)

    m = VanillaGAN()
    m.set_optimizer(opt.SGD(lr=0.05, momentum=0.5))
    noise = tensor.Tensor((batch_size, m.noise_size), dev, tensor.float32)
    noise.gaussian(0.0, 1.0)
    m.compile([noise], is_train=True, use_graph=use_graph, sequential=True)

    real_fake = tensor.Tensor((2 * batch_size, m.feature_size), dev, tensor.float32)
    dis_labels = tensor.Tensor((2 * batch_size, 1), dev, tensor.float32)
    dis_labels.copy_from_numpy(np.concatenate([np.ones((batch_size, 1)), np.zeros((batch_size, 1))])
                               .astype(np.float32))
    gen_labels = tensor.Tensor((batch_size, 1), dev, tensor.float32)
    gen_labels.set_value(1.0)

    gen_before, dis_before = snapshot(m, "gen_net"), snapshot(m, "dis_net")
    dis_losses, gen_losses, dis_check = [], [], None
    for step in range(steps):
        real = images[rng.randint(0, len(images), batch_size)]
        noise.copy_from_numpy(rng.randn(batch_size, m.noise_size).astype(np.float32))
        m.eval()
        fake = tensor.to_numpy(m.forward_gen(noise))
        m.train()
        real_fake.copy_from_numpy(np.concatenate([real, fake]))
        _, d_loss = m.train_one_batch_dis(real_fake, dis_labels)
        dis_losses.append(tensor.to_numpy(d_loss)[0])
        if step == 0:
            # one more discriminator step on the same batch must lower its loss
            _, again = m.train_one_batch_dis(real_fake, dis_labels)
            dis_check = (dis_losses[0], tensor.to_numpy(again)[0])

        noise.copy_from_numpy(rng.randn(batch_size, m.noise_size).astype(np.float32))
        _, g_loss = m(noise, gen_labels)
        gen_losses.append(tensor.to_numpy(g_loss)[0])
        if step % 20 == 0:
            print("step %d: discriminator loss %.4f, generator loss %.4f"
                  % (step, dis_losses[-1], gen_losses[-1]), flush=True)

    gen_after, dis_after = snapshot(m, "gen_net"), snapshot(m, "dis_net")
    return dis_losses, gen_losses, dis_check, (gen_before, gen_after), (dis_before, dis_after)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="vanilla GAN (drop-in test)")
    parser.add_argument("--steps", type=int, default=mnist_data.steps(100))
    parser.add_argument("--graph", action="store_true", help="compile train_one_batch")
    args = parser.parse_args()
    dis_losses, gen_losses, dis_check, gen, dis = train(args.steps, use_graph=args.graph)

    assert np.all(np.isfinite(dis_losses)) and np.all(np.isfinite(gen_losses))
    assert dis_check[1] < dis_check[0], "discriminator step did not lower its loss: %s" % (dis_check,)
    assert sorted(gen[0]) == sorted(gen[1]) and len(gen[0]) == 4 and len(dis[0]) == 4, (list(gen[0]), list(dis[0]))
    for before, after in (gen, dis):  # both networks were trained
        assert all(not np.array_equal(before[k], after[k]) for k in before), "a network was not updated"
    print("ok: discriminator loss %.4f -> %.4f, generator loss %.4f -> %.4f"
          % (dis_losses[0], dis_losses[-1], gen_losses[0], gen_losses[-1]))
