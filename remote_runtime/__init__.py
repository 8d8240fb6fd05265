"""remote-runtime: a Colab runtime on a machine you control, with one command."""

__version__ = "0.1.0"
