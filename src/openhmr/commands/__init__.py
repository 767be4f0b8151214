"""Sub-commands of the ``openhmr`` command line, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets
``func`` (``args -> int exit code``) as the parser default. Heavy imports
happen inside ``func`` so that ``openhmr --help`` stays fast.
"""
