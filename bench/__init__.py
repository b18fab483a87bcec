"""Side-by-side benchmarks of lmi-gevent and awslambdaric (``python -m bench``).

This package's top level imports nothing: the runtimes under test import
``bench.handlers`` through it, and anything imported here would be loaded into every
runtime process (and, for lmi-gevent, before gevent could patch it).
"""
