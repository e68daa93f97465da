"""VA Signals: watches U.S. government sources for changes to veterans' policy."""

__version__ = "0.1.0"
