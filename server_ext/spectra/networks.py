"""The per-bin Keras networks: built, trained, and unpacked for fusion.

TensorFlow is imported here only, on first use, so that importing the
package (and streaming with a loaded model, which runs the fused NumPy
computation) never loads it.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np

__all__ = ["keras_module", "build_bin_model", "global_random_state_kept", "train_stacked",
           "fold_standardisation",
           "bin_models", "unpack"]

_KERAS = None


def keras_module():
    """Import Keras (TensorFlow backend) once, with sane threading for small
    models on a shared machine."""
    global _KERAS
    if _KERAS is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import tensorflow as tf

        try:
            # tiny networks: more threads than cores only adds contention
            n = max(1, min(os.cpu_count() or 1, 4))
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TF already initialised by the caller: keep theirs
            pass
        import keras

        _KERAS = keras
    return _KERAS


def build_bin_model(n_inputs, hidden, n_classes, mean, variance, name):
    """One bin's network: standardisation (fixed), Dense(hidden, relu),
    Dense(n_classes, softmax). Built to hold trained weights, so its
    initial weights are zeros (a random initializer would draw a seed from
    Python's global ``random``)."""
    keras = keras_module()
    return keras.Sequential(
        [
            keras.Input((n_inputs,), name=f"{name}_in"),
            keras.layers.Normalization(mean=mean, variance=variance, name=f"{name}_norm"),
            keras.layers.Dense(hidden, activation="relu", kernel_initializer="zeros",
                               name=f"{name}_hidden"),
            keras.layers.Dense(n_classes, activation="softmax", kernel_initializer="zeros",
                               name=f"{name}_out"),
        ],
        name=name,
    )


@contextlib.contextmanager
def global_random_state_kept():
    """Restore Python's and NumPy's global random states on exit: TensorFlow
    and Keras may draw from them, and fitting a model must not change what a
    user's own ``random``/``np.random`` calls return."""
    py, nps = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(nps)


def _stacked_dense_class():
    keras = keras_module()

    class StackedDense(keras.layers.Layer):
        """``bins`` independent dense layers applied side by side:
        (n, bins, in) -> (n, bins, units) with kernel (bins, in, units)."""

        def __init__(self, bins, units, activation=None, seed=None, **kw):
            super().__init__(**kw)
            self.bins, self.units = bins, units
            self.activation = keras.activations.get(activation)
            # a seeded initializer: reproducible without touching global random state
            self.kernel_initializer = keras.initializers.GlorotUniform(seed=seed)

        def build(self, shape):
            self.kernel = self.add_weight(shape=(self.bins, shape[-1], self.units),
                                          initializer=self.kernel_initializer, name="kernel")
            self.bias = self.add_weight(shape=(self.bins, self.units),
                                        initializer="zeros", name="bias")

        def call(self, x):
            return self.activation(keras.ops.einsum("nbi,biu->nbu", x, self.kernel) + self.bias)

    return StackedDense


def train_stacked(F, T, masks, hidden, epochs, learning_rate, batch_size, seed, verbose=0,
                  on_epochs=None):
    """Train ``groups x bins`` independent networks side by side.

    ``F``: features (n, bins, features); ``T``: soft targets (n, classes);
    ``masks``: (n, groups) bool, which samples network group g trains on
    (e.g. one group per cross-validation fold plus one on everything).

    The networks share no weights. They are trained as one stacked Keras
    model -- network (g, b) is slice ``g * bins + b`` of each kernel, and the
    loss is the masked mean of the networks' own losses, so each slice gets
    its own network's gradient -- with Adam on random mini-batches and the
    whole loop in one compiled graph: a graph of many tiny networks, or
    ``Model.fit``'s per-step Python, would cost more than the arithmetic.

    ``on_epochs(done)``, if given, is called as training progresses (about
    ten times, with the number of epochs done; the graph runs in that many
    chunks, each resuming the same random batch sequence).

    Returns ``(mean, var, K1, c1, K2, c2)``: the fixed standardisation
    (bins, features) and the stacked kernels/biases, leading axis
    ``groups * bins``.
    """
    import tensorflow as tf

    keras = keras_module()
    n, n_bins, n_feat = F.shape
    n_groups = masks.shape[1]
    n_classes = T.shape[1]
    nets = n_groups * n_bins
    mean = F.mean(0)
    var = F.var(0)
    # floor: a constant feature must not turn noise into a huge input
    var = np.maximum(var, 1e-2 * var.mean(1, keepdims=True) + 1e-8)
    StackedDense = _stacked_dense_class()
    model = keras.Sequential([
        keras.Input((nets, n_feat)),
        keras.layers.Normalization(axis=(1, 2), mean=np.tile(mean, (n_groups, 1)),
                                   variance=np.tile(var, (n_groups, 1))),
        StackedDense(nets, hidden, "relu", seed=None if seed is None else int(seed)),
        StackedDense(nets, n_classes, "softmax", seed=None if seed is None else int(seed) + 1),
    ])
    bs = int(min(batch_size, n))
    steps = int(np.ceil(epochs * n / bs))
    x = tf.constant(F, tf.float32)
    t = tf.constant(T, tf.float32)
    m = tf.constant(np.repeat(masks.astype(np.float32), n_bins, axis=1))  # (n, nets)
    variables = model.trainable_variables
    opt = keras.optimizers.Adam(learning_rate)
    opt.build(variables)
    seed_pair = tf.constant([0 if seed is None else int(seed), 1], tf.int32)

    @tf.function
    def run(first, stop):
        loss = tf.constant(0.0)
        for i in tf.range(first, stop):
            idx = tf.random.stateless_uniform((bs,), seed_pair + tf.stack([0, i]),
                                              0, n, dtype=tf.int32)
            xb = tf.tile(tf.gather(x, idx), [1, n_groups, 1])
            tb, mb = tf.gather(t, idx), tf.gather(m, idx)
            with tf.GradientTape() as tape:
                p = model(xb, training=True)
                ce = -tf.reduce_sum(tb[:, None, :] * tf.math.log(tf.clip_by_value(p, 1e-7, 1.0)), -1)
                loss = tf.reduce_sum(ce * mb) / tf.maximum(tf.reduce_sum(mb), 1.0)
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    chunks = max(1, min(10, epochs)) if on_epochs is not None else 1
    bounds = np.linspace(0, steps, chunks + 1).round().astype(int)
    for a, b in zip(bounds[:-1], bounds[1:]):
        loss = float(run(tf.constant(a, tf.int32), tf.constant(b, tf.int32)))
        if on_epochs is not None:
            on_epochs(int(round(epochs * b / steps)))
    if verbose:
        print(f"trained {nets} networks, {steps} steps of {bs}: final loss {loss:.4f}")
    K1, c1 = model.layers[1].get_weights()
    K2, c2 = model.layers[2].get_weights()
    return mean, var, K1, c1, K2, c2


def fold_standardisation(mean, var, K1, c1):
    """First-layer weights with the fixed standardisation folded in, as
    float32: ``W1 (bins, features, hidden)``, ``b1 (bins, hidden)``. Keras'
    Normalization divides by ``max(sqrt(var), 1e-7)``."""
    mean = np.asarray(mean, np.float64).reshape(len(K1), -1)
    std = np.maximum(np.sqrt(np.asarray(var, np.float64).reshape(len(K1), -1)), 1e-7)
    K1 = np.asarray(K1, np.float64)
    W1 = K1 / std[:, :, None]
    b1 = np.asarray(c1, np.float64) - np.einsum("bi,biu->bu", mean / std, K1)
    return W1.astype(np.float32), b1.astype(np.float32)


def bin_models(mean, var, K1, c1, K2, c2):
    """One ``keras.Sequential`` per bin holding the given trained weights."""
    models = []
    for b in range(len(K1)):
        m = build_bin_model(K1.shape[1], K1.shape[2], K2.shape[2], mean[b], var[b],
                            f"bin{b:02d}")
        m.layers[1].set_weights([K1[b], c1[b]])
        m.layers[2].set_weights([K2[b], c2[b]])
        models.append(m)
    return models


def unpack(models):
    """Stacked float32 arrays of the networks with the (fixed) standardisation
    folded into the first layer: ``W1 (bins, features, hidden)``, ``b1``,
    ``W2 (bins, hidden, classes)``, ``b2``."""
    layers = [m.layers for m in models]
    mean = np.stack([np.asarray(norm.mean).reshape(-1) for norm, _, _ in layers])
    var = np.stack([np.asarray(norm.variance).reshape(-1) for norm, _, _ in layers])
    K1, c1, K2, c2 = (np.stack(w) for w in zip(*(d1.get_weights() + d2.get_weights()
                                                 for _, d1, d2 in layers)))
    W1, b1 = fold_standardisation(mean, var, K1, c1)
    return W1, b1, K2.astype(np.float32), c2.astype(np.float32)
