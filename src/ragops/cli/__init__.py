"""The ``ragops`` command line: thin wrappers over the library."""
