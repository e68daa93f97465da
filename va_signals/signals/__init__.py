"""Relevance of documents to veterans' policy: topic classifiers and their storage."""
