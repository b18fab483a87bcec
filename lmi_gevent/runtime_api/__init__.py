"""Talking to the platform: the Lambda Runtime API client, its HTTP/1.1 connection, answer
delivery with retries, event and response marshalling, and the error bodies the platform reads.

Internal: nothing here is public API. Stdlib only, so both serving modes and the gevent-free
supervisor can use it.
"""
