"""A Keras functional model with two named inputs, as a factory for a jobs file
(docs/examples/keras.yaml): an image and a vector of metadata, called with a
dict as Keras expects (`model({"image": ..., "meta": ...})`).
"""
import keras


def build(classes: int = 3, image_size: int = 32):
    keras.utils.set_random_seed(0)
    image = keras.Input(shape=(image_size, image_size, 3), name="image")
    meta = keras.Input(shape=(4,), name="meta")
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(image))
    joined = keras.layers.Concatenate()([features, keras.layers.Dense(8, activation="relu")(meta)])
    scores = keras.layers.Dense(classes, activation="softmax", name="scores")(joined)
    return keras.Model(inputs={"image": image, "meta": meta}, outputs=scores)
