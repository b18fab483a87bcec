"""What the runtime tells users about their handler: the stall and wedge detector, stack
capture pointing at the handler's own frames, and the state finders ``lmi-gevent check`` uses.

Internal: nothing here is public API.
"""
