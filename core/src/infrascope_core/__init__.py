"""InfraScope core: what more than one component needs, with one owner each."""

__version__ = "0.1.0"
