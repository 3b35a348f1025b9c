"""Defense-GAN (Samangouei, Kabkab, Chellappa, ICLR 2018) in TensorFlow 2 / Keras.

The Python API (see README.md, "Python API"):

    import defense_gan
    purifier = defense_gan.Purifier(defense_gan.load_generator("mnist"))
    model = defense_gan.DefendedClassifier(defense_gan.load_classifier("F"), purifier)

Importing the package is light: it registers no absl flags (those live in defense_gan/cli.py,
used by the command line only) and loads TensorFlow only when an API name is first used.
"""

__version__ = "0.1.0"

# name -> module that defines it (imported on first use, PEP 562).
_API = {"load_generator": "defense_gan.api", "load_classifier": "defense_gan.api",
        "DefendedClassifier": "defense_gan.api", "Purifier": "defense_gan.purifier",
        "ConfigError": "defense_gan.errors", "DefenseGanError": "defense_gan.errors"}

__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        import importlib
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'defense_gan' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_API))
