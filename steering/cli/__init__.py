"""`python -m steering COMMAND`: thin adapters from arguments to the package's functions."""
