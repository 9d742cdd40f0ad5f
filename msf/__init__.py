"""msf: MicroSegFormer face parsing, from training to fast inference at the edge."""

__version__ = "0.1.0"
