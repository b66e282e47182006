"""A small numpy multi-layer perceptron: forward, hand-written backward, Adam.

All weights and biases of all networks live in one flat buffer, so the Adam
update is a handful of in-place vector operations.

Each layer's weight (fan_in, fan_out) is followed in the buffer by its bias,
so together they are one (fan_in + 1, fan_out) matrix whose last row is the
bias. Training (:class:`MinibatchNetwork`) keeps every layer input with a
trailing row of ones, so one matrix product applies weight and bias, and one
product gives the gradients of both.
"""

from math import sqrt

import numpy as np

ACTIVATIONS = {"tanh", "relu"}


def layer_shapes(layer_sizes):
    """(fan_in, fan_out) of each affine layer of a network with these widths."""
    return list(zip(layer_sizes[:-1], layer_sizes[1:]))


def n_parameters(shapes):
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in shapes)


def unpack(flat, shapes):
    """Views (weight, bias) into ``flat`` for each layer, in order."""
    layers, start = [], 0
    for fan_in, fan_out in shapes:
        weight = flat[start : start + fan_in * fan_out].reshape(fan_in, fan_out)
        start += fan_in * fan_out
        bias = flat[start : start + fan_out]
        start += fan_out
        layers.append((weight, bias))
    return layers, start


def unpack_augmented(flat, shapes):
    """Views (fan_in + 1, fan_out) into ``flat``: each layer's weight with its bias as last row."""
    layers, start = [], 0
    for fan_in, fan_out in shapes:
        size = (fan_in + 1) * fan_out
        layers.append(flat[start : start + size].reshape(fan_in + 1, fan_out))
        start += size
    return layers, start


def glorot_initialize(flat, shapes, random_state):
    """Glorot-uniform weights and zero biases, written into ``flat``."""
    layers, _ = unpack(flat, shapes)
    for (weight, bias), (fan_in, fan_out) in zip(layers, shapes):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        weight[...] = random_state.uniform(-bound, bound, size=weight.shape)
        bias[...] = 0.0


def forward(layers, inputs, activation):
    """Activations of every layer; the last layer is affine (no activation)."""
    activations = [inputs]
    for index, (weight, bias) in enumerate(layers):
        output = activations[-1] @ weight
        output += bias
        if index < len(layers) - 1:
            if activation == "tanh":
                np.tanh(output, out=output)
            else:
                np.maximum(output, 0, out=output)
        activations.append(output)
    return activations


def feature_major(flat, n_rows, n_columns):
    """The contiguous (n_rows, n_columns) array at the start of a flat buffer."""
    return flat[: n_rows * n_columns].reshape(n_rows, n_columns)


class MinibatchNetwork:
    """Forward and backward passes of an MLP on minibatches, in preallocated buffers.

    Minibatches are feature-major: a batch of n samples is an (n_features, n)
    array, one column per sample. Every buffer is flat and holds up to
    ``max_rows`` samples; a batch of n uses its first n_features * n entries,
    so the arrays of every batch size are contiguous, and a layer's input
    with its row of ones is one (fan_in + 1, n) array whose first fan_in rows
    are the previous layer's output. Nothing is allocated per batch; the
    arrays returned are views into the buffers, valid until the next call.

    ``parameters`` and ``gradient`` are flat buffers (or parts of one) laid
    out as :func:`unpack`; the parameters are read, and every parameter's
    gradient is overwritten by ``backward``.
    """

    def __init__(self, parameters, gradient, shapes, activation, max_rows):
        dtype = parameters.dtype
        self.activation = activation
        self.shapes = shapes
        self.layers, _ = unpack_augmented(parameters, shapes)
        self.gradients, _ = unpack_augmented(gradient, shapes)
        self.transposed = [layer.T for layer in self.layers]
        self.weights = [layer[:-1] for layer in self.layers]  # without the bias
        # each layer's input and its row of ones; the hidden layers' outputs
        # are written into the inputs of the next layers
        self.inputs = [np.empty((fan_in + 1) * max_rows, dtype=dtype) for fan_in, _ in shapes]
        self.output = np.empty(shapes[-1][1] * max_rows, dtype=dtype)
        # the gradient with respect to each layer's input (that of layer 0:
        # the input gradient), and room for the activation's derivative
        self.deltas = [np.empty(fan_in * max_rows, dtype=dtype) for fan_in, _ in shapes]
        widest = max((fan_in for fan_in, _ in shapes[1:]), default=0)
        self.scratch = np.empty(widest * max_rows, dtype=dtype)
        self._views = {}

    def views(self, n_samples):
        """Per layer: (input with ones, its output, the gradient wrt its input, derivative room).

        Built once per batch size (a fit sees two) to spare the reshapes.
        """
        views = self._views.get(n_samples)
        if views is None:
            views = []
            for index, (fan_in, fan_out) in enumerate(self.shapes):
                last = index == len(self.shapes) - 1
                views.append(
                    (
                        feature_major(self.inputs[index], fan_in + 1, n_samples),
                        feature_major(
                            self.output if last else self.inputs[index + 1], fan_out, n_samples
                        ),
                        feature_major(self.deltas[index], fan_in, n_samples),
                        feature_major(self.scratch, fan_in, n_samples) if index else None,
                    )
                )
            views = self._views[n_samples] = views
        return views

    def input(self, n_samples):
        """The (n_inputs, n_samples) array into which to write a batch before ``forward``."""
        return self.views(n_samples)[0][0][:-1]

    def forward(self, n_samples):
        """The (n_outputs, n_samples) output for the batch in ``input``; the last layer is affine."""
        views = self.views(n_samples)
        for index, (transposed, (inputs, output, _, _)) in enumerate(zip(self.transposed, views)):
            inputs[-1] = 1.0  # other batch sizes share the buffer
            np.matmul(transposed, inputs, out=output)
            if index == len(views) - 1:
                return output
            if self.activation == "tanh":
                np.tanh(output, out=output)
            else:
                np.maximum(output, 0.0, out=output)

    def backward(self, n_samples, output_gradient, input_gradient=True):
        """Write the parameter gradients; return the input gradient (a view).

        ``output_gradient`` is the gradient of the objective with respect to
        the output of the last ``forward``, (n_outputs, n_samples). With
        ``input_gradient=False`` the product by the first weight matrix is
        skipped and None is returned.
        """
        views = self.views(n_samples)
        delta = output_gradient
        for index in range(len(views) - 1, -1, -1):
            inputs, _, input_delta, derivative = views[index]
            # the last row, the row of ones times delta, is the bias gradient
            np.matmul(inputs, delta.T, out=self.gradients[index])
            if index == 0 and not input_gradient:
                return None
            delta = np.matmul(self.weights[index], delta, out=input_delta)
            if index > 0:
                hidden = inputs[:-1]
                if self.activation == "tanh":  # 1 - tanh^2, from the activation itself
                    np.multiply(hidden, hidden, out=derivative)
                    np.subtract(1.0, derivative, out=derivative)
                else:  # the output of relu is positive exactly where its slope is one
                    np.sign(hidden, out=derivative)
                delta *= derivative
        return delta


class Adam:
    """Adam on a flat parameter buffer, updated in place (Kingma & Ba, 2015),
    with an optional moving average of its iterates.

    Each step is a dozen in-place passes over the buffer with no temporary;
    the scalars are Python floats, so float32 buffers are updated in float32.

    With ``average_decay`` d > 0, ``ascend`` given an ``average`` buffer
    also updates it to the exponential moving average of the iterates
    (Polyak averaging): after step t, ``average += (1 - d_t) (iterate -
    average)`` with ``d_t = min(d, (1 + t) / (10 + t))``, so that the first,
    poor iterates are soon forgotten and the average settles to a horizon of
    about 1 / (1 - d) steps. t counts the steps of the average
    (``average_steps``), which a continued training carries over: it moves
    the kept average slowly, not as if it were a first iterate.
    """

    def __init__(
        self, size, dtype, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8, average_decay=0.0
    ):
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.average_decay = average_decay
        self.first_moment = np.zeros(size, dtype=dtype)
        self.second_moment = np.zeros(size, dtype=dtype)
        self.scratch = np.zeros(size, dtype=dtype)
        self.step_count = 0
        self.average_steps = 0

    def ascend(self, parameters, gradient, average=None):
        """One step up the objective whose gradient is ``gradient``; then the
        moving average of the iterates, if an ``average`` buffer is given."""
        self.step_count += 1
        first, second, scratch = self.first_moment, self.second_moment, self.scratch
        # m += (1 - beta1) (g - m), that is m = beta1 m + (1 - beta1) g
        np.subtract(gradient, first, out=scratch)
        scratch *= 1.0 - self.beta1
        first += scratch
        # v += (1 - beta2) (g^2 - v)
        np.multiply(gradient, gradient, out=scratch)
        scratch -= second
        scratch *= 1.0 - self.beta2
        second += scratch
        # bias-corrected step: lr m_hat / (sqrt(v_hat) + eps), with the
        # corrections moved onto the scalars
        correction1 = 1.0 - self.beta1**self.step_count
        correction2 = sqrt(1.0 - self.beta2**self.step_count)
        np.sqrt(second, out=scratch)
        scratch += self.epsilon * correction2
        np.divide(first, scratch, out=scratch)
        scratch *= self.learning_rate * correction2 / correction1
        parameters += scratch
        if average is not None:
            self.average_steps += 1
            step = self.average_steps
            decay = min(self.average_decay, (1.0 + step) / (10.0 + step))
            np.subtract(parameters, average, out=scratch)
            scratch *= 1.0 - decay
            average += scratch
