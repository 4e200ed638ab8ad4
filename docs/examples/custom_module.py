"""The SavedModel guide's custom module, as a factory for a jobs file (docs/examples/custom.yaml).

A tf.Module with a variable, a traced __call__ and a mutate(new_v) method.
"""
import tensorflow as tf


class CustomModule(tf.Module):
    def __init__(self):
        super().__init__()
        self.v = tf.Variable(1.0)

    @tf.function
    def __call__(self, x):
        return x * self.v

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def mutate(self, new_v):
        return self.v.assign(new_v)


def build() -> CustomModule:
    return CustomModule()
