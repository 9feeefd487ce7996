"""podsync: two-way sync between a local folder and a folder inside a running container."""

__version__ = "0.1.0"
