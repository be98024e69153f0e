"""multissl: self-supervised learning across modalities."""
__version__ = "0.1.0"
