"""Several worker processes on several CPUs: the supervisor, what it tells each worker, the
status they share, and how many CPUs the process may use.

Internal, and gevent-free: the supervisor never imports gevent, and a worker reads its
assignment before it patches anything.
"""
