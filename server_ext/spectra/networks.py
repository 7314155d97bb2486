"""The per-bin Keras networks: built, trained, and unpacked for fusion.

TensorFlow is imported here only, on first use, so that importing the
package (and streaming with a loaded model, which runs the fused NumPy
computation) never loads it.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
from typing import NamedTuple

import numpy as np

__all__ = ["keras_module", "build_bin_model", "global_random_state_kept", "BinNetworks",
           "train_stacked", "bin_models", "unpack"]

_KERAS = None

# TensorFlow >= 2.19 prints these while it is imported whatever
# TF_CPP_MIN_LOG_LEVEL says (tensorflow/tensorflow#100442): notices, not
# errors, that every ``daas spectra train`` and every worker's log repeated.
IMPORT_NOTICES = ("oneDNN custom operations are on",
                  "All log messages before absl::InitializeLog() is called")


# the filter: every line but those holding one of its arguments, passed on at once
_FILTER = ("import sys\n"
           "drop = [n.encode() for n in sys.argv[1:]]\n"
           "for line in sys.stdin.buffer:\n"
           "    if not any(n in line for n in drop):\n"
           "        sys.stdout.buffer.write(line)\n"
           "        sys.stdout.buffer.flush()\n")


@contextlib.contextmanager
def import_notices_dropped(notices=IMPORT_NOTICES):
    """Pass what is written to file descriptor 2 inside (TensorFlow's C++
    logging writes there, not to ``sys.stderr``) through a small process
    that leaves out the lines holding one of ``notices``. A process, not a
    buffer or a thread of this one: should the import crash this process,
    what it wrote last (a fatal log line, a faulthandler traceback) still
    gets out. Without stderr, or a process to filter it, nothing is filtered."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        sieve = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, *notices],
                                 stdin=subprocess.PIPE, stdout=saved, stderr=saved)
    except OSError:
        os.close(saved)
        yield
        return
    try:
        _flush_stderr()
        os.dup2(sieve.stdin.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
    finally:
        sieve.stdin.close()  # the last end writing to it: it passes on what is left, then ends
        try:
            sieve.wait(10)
        except subprocess.TimeoutExpired:  # a process started inside still holds the pipe
            sieve.kill()
            sieve.wait()  # reaped at once: SIGKILL cannot be ignored
        os.close(saved)


def _flush_stderr():
    if sys.stderr is not None:
        sys.stderr.flush()


def keras_module():
    """Import Keras (TensorFlow backend) once, with sane threading for small
    models on a shared machine."""
    global _KERAS
    if _KERAS is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        with import_notices_dropped():
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


class BinNetworks(NamedTuple):
    """One small network per bin, stacked on the leading axis (bins): the
    fixed standardisation ``mean``/``variance`` (bins, segments), then
    Dense(hidden, relu) ``hidden_kernel`` (bins, segments, hidden) +
    ``hidden_bias`` (bins, hidden), and Dense(classes, softmax)
    ``output_kernel`` (bins, hidden, classes) + ``output_bias``."""

    mean: np.ndarray
    variance: np.ndarray
    hidden_kernel: np.ndarray
    hidden_bias: np.ndarray
    output_kernel: np.ndarray
    output_bias: np.ndarray

    def select(self, bins) -> "BinNetworks":
        """The networks of ``bins`` (an index or mask over the leading axis)."""
        return BinNetworks(*(a[bins] for a in self))

    def folded(self):
        """float32 ``(W1, b1, W2, b2)`` with the standardisation folded into
        the first layer, as :class:`.fused.FusedVote` computes them. Keras'
        Normalization divides by ``max(sqrt(variance), 1e-7)``."""
        n_bins = len(self.hidden_kernel)
        mean = np.asarray(self.mean, np.float64).reshape(n_bins, -1)
        std = np.maximum(np.sqrt(np.asarray(self.variance, np.float64).reshape(n_bins, -1)), 1e-7)
        kernel = np.asarray(self.hidden_kernel, np.float64)
        W1 = kernel / std[:, :, None]
        b1 = np.asarray(self.hidden_bias, np.float64) - np.einsum("bi,biu->bu", mean / std, kernel)
        return (W1.astype(np.float32), b1.astype(np.float32),
                self.output_kernel.astype(np.float32), self.output_bias.astype(np.float32))


def _standardisation(features):
    """Per bin and segment, the mean and (floored) variance of the copies."""
    mean = features.mean(0)
    var = features.var(0)
    # floor: a constant feature must not turn noise into a huge input
    return mean, np.maximum(var, 1e-2 * var.mean(1, keepdims=True) + 1e-8)


def _stacked_model(mean, var, n_groups, hidden_units, n_classes, seed):
    """The ``n_groups`` copies of the bins' networks as one Keras model on
    (n, groups * bins, segments)."""
    keras = keras_module()
    StackedDense = _stacked_dense_class()
    n_networks = n_groups * len(mean)
    return keras.Sequential([
        keras.Input((n_networks, mean.shape[1])),
        keras.layers.Normalization(axis=(1, 2), mean=np.tile(mean, (n_groups, 1)),
                                   variance=np.tile(var, (n_groups, 1))),
        StackedDense(n_networks, hidden_units, "relu", seed=None if seed is None else int(seed)),
        StackedDense(n_networks, n_classes, "softmax",
                     seed=None if seed is None else int(seed) + 1),
    ])


def _training_steps(model, features, targets, masks, batch, learning_rate, seed):
    """A compiled ``run(first, stop)``: Adam steps ``first..stop-1`` on
    random mini-batches of ``batch`` copies (batch i drawn from ``seed`` and
    i alone, so the steps can run in chunks); returns the last step's loss."""
    keras = keras_module()  # first: it quiets TensorFlow's C++ log before the import
    import tensorflow as tf

    n, n_bins = features.shape[:2]
    n_groups = masks.shape[1]
    x = tf.constant(features, tf.float32)
    t = tf.constant(targets, tf.float32)
    # which copies train network (g, b): its group's mask, repeated per bin
    m = tf.constant(np.repeat(masks.astype(np.float32), n_bins, axis=1))  # (n, networks)
    variables = model.trainable_variables
    opt = keras.optimizers.Adam(learning_rate)
    opt.build(variables)
    seed_pair = tf.constant([0 if seed is None else int(seed), 1], tf.int32)

    @tf.function
    def run(first, stop):
        loss = tf.constant(0.0)
        for i in tf.range(first, stop):
            idx = tf.random.stateless_uniform((batch,), seed_pair + tf.stack([0, i]),
                                              0, n, dtype=tf.int32)
            xb = tf.tile(tf.gather(x, idx), [1, n_groups, 1])
            tb, mb = tf.gather(t, idx), tf.gather(m, idx)
            with tf.GradientTape() as tape:
                p = model(xb, training=True)
                ce = -tf.reduce_sum(tb[:, None, :] * tf.math.log(tf.clip_by_value(p, 1e-7, 1.0)), -1)
                loss = tf.reduce_sum(ce * mb) / tf.maximum(tf.reduce_sum(mb), 1.0)
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return run


def train_stacked(features, targets, masks, *, hidden_units, epochs, learning_rate, batch_size,
                  seed, verbose=0, on_epochs=None) -> list[BinNetworks]:
    """Train ``groups x bins`` independent networks side by side.

    ``features``: (n, bins, segments); ``targets``: soft targets
    (n, classes); ``masks``: (n, groups) bool, which copies network group g
    trains on (e.g. one group per cross-validation fold plus one on
    everything).

    The networks share no weights. They are trained as one stacked Keras
    model -- network (g, b) is slice ``g * bins + b`` of each kernel, and the
    loss is the masked mean of the networks' own losses, so each slice gets
    its own network's gradient -- with Adam on random mini-batches and the
    whole loop in one compiled graph: a graph of many tiny networks, or
    ``Model.fit``'s per-step Python, would cost more than the arithmetic.

    ``on_epochs(done)``, if given, is called as training progresses (about
    ten times, with the number of epochs done; the graph runs in that many
    chunks, each resuming the same random batch sequence).

    Returns one :class:`BinNetworks` per group.
    """
    keras_module()  # first: it quiets TensorFlow's C++ log before the import
    import tensorflow as tf

    n, n_bins = features.shape[:2]
    n_groups = masks.shape[1]
    mean, var = _standardisation(features)
    model = _stacked_model(mean, var, n_groups, hidden_units, targets.shape[1], seed)
    batch = int(min(batch_size, n))
    steps = int(np.ceil(epochs * n / batch))
    run = _training_steps(model, features, targets, masks, batch, learning_rate, seed)
    chunks = max(1, min(10, epochs)) if on_epochs is not None else 1
    bounds = np.linspace(0, steps, chunks + 1).round().astype(int)
    for a, b in zip(bounds[:-1], bounds[1:]):
        loss = float(run(tf.constant(a, tf.int32), tf.constant(b, tf.int32)))
        if on_epochs is not None:
            on_epochs(int(round(epochs * b / steps)))
    if verbose:
        print(f"trained {n_groups * n_bins} networks, {steps} steps of {batch}: "
              f"final loss {loss:.4f}")
    weights = model.layers[1].get_weights() + model.layers[2].get_weights()
    return [BinNetworks(mean, var, *(w[g * n_bins:(g + 1) * n_bins] for w in weights))
            for g in range(n_groups)]


def bin_models(networks: BinNetworks):
    """One ``keras.Sequential`` per bin holding the given trained weights."""
    models = []
    for b in range(len(networks.mean)):
        net = networks.select(b)
        m = build_bin_model(*net.hidden_kernel.shape, net.output_kernel.shape[1], net.mean,
                            net.variance, f"bin{b:02d}")
        m.layers[1].set_weights([net.hidden_kernel, net.hidden_bias])
        m.layers[2].set_weights([net.output_kernel, net.output_bias])
        models.append(m)
    return models


def unpack(models):
    """The networks of ``models`` (from :func:`bin_models`), stacked and
    folded as :meth:`BinNetworks.folded` gives them."""
    layers = [m.layers for m in models]
    mean = np.stack([np.asarray(norm.mean).reshape(-1) for norm, _, _ in layers])
    var = np.stack([np.asarray(norm.variance).reshape(-1) for norm, _, _ in layers])
    dense = (np.stack(w) for w in zip(*(hidden.get_weights() + out.get_weights()
                                        for _, hidden, out in layers)))
    return BinNetworks(mean, var, *dense).folded()
