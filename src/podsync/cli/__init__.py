"""The podsync command line (see app.py); the only package that prints or exits."""
