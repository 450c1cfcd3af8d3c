"""Serving the RAG chain: Databricks Model Serving deployment (and local serving)."""
