__version__ = "0.1.0"
# Bumped whenever the run-directory layout changes incompatibly.
RUN_FORMAT_VERSION = 1
