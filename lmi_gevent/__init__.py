"""lmi-gevent: a Lambda runtime interface client that serves AWS Lambda Managed Instances
concurrency from one process with gevent.

This package's top level must stay light: the console script imports it before it decides
whether to monkey-patch, so nothing here may import ssl, threading, urllib3,
concurrent.futures or gevent (docs/design.md, invariant 1).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
