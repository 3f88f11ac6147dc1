"""lenet-bench: a reproducible benchmark of LeNet-family networks on MNIST and Fashion-MNIST."""

__version__ = "0.1.0"
