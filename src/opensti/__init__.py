"""opensti: STIR/SHAKEN for voice service providers."""

__version__ = "0.1.0"
