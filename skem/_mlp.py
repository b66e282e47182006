"""A small numpy multi-layer perceptron: forward, hand-written backward, Adam.

All weights and biases of all networks live in one flat buffer, so the Adam
update is a handful of in-place vector operations.
"""

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


def backward(layers, gradients, activations, output_gradient, activation, input_gradient=True):
    """Write the parameter gradients into ``gradients``; return the input gradient.

    ``output_gradient`` is the gradient of the objective with respect to the
    network's output; ``gradients`` are views laid out as ``layers``, each
    overwritten (every parameter gets exactly one contribution). With
    ``input_gradient=False`` the last product, by the first weight matrix,
    is skipped and None is returned.
    """
    delta = output_gradient
    for index in range(len(layers) - 1, -1, -1):
        weight, _ = layers[index]
        weight_gradient, bias_gradient = gradients[index]
        np.matmul(activations[index].T, delta, out=weight_gradient)
        np.sum(delta, axis=0, out=bias_gradient)
        if index == 0 and not input_gradient:
            return None
        delta = delta @ weight.T
        if index > 0:
            hidden = activations[index]
            if activation == "tanh":
                derivative = np.square(hidden)
                np.subtract(1.0, derivative, out=derivative)
                delta *= derivative
            else:
                delta *= hidden > 0
    return delta


class Adam:
    """Adam on a flat parameter buffer, updated in place (Kingma & Ba, 2015)."""

    def __init__(self, size, dtype, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.first_moment = np.zeros(size, dtype=dtype)
        self.second_moment = np.zeros(size, dtype=dtype)
        self.scratch = np.zeros(size, dtype=dtype)
        self.step_count = 0

    def ascend(self, parameters, gradient):
        """One step up the objective whose gradient is ``gradient``."""
        self.step_count += 1
        self.first_moment *= self.beta1
        self.first_moment += (1 - self.beta1) * gradient
        self.second_moment *= self.beta2
        np.square(gradient, out=self.scratch)
        self.scratch *= 1 - self.beta2
        self.second_moment += self.scratch
        correction1 = 1 - self.beta1**self.step_count
        correction2 = 1 - self.beta2**self.step_count
        step = self.learning_rate * np.sqrt(correction2) / correction1
        np.sqrt(self.second_moment, out=self.scratch)
        self.scratch += self.epsilon * np.sqrt(correction2)
        np.divide(self.first_moment, self.scratch, out=self.scratch)
        self.scratch *= step
        parameters += self.scratch
