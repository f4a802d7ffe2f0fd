"""TensorRT engines: describe inputs, build from a plan, cache, inspect (device side, no torch).

TensorRT itself is imported only inside :mod:`edge_resnet.engine.builder` and the ``tensorrt``
backend, when a build or a run asks for it.
"""
