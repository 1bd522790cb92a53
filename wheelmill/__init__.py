"""wheelmill: a wheel build farm that follows PyPI and serves the wheels it builds."""

__version__ = "0.1.0"
