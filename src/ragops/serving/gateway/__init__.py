"""The serving gateway: an OpenAI-compatible endpoint in front of the registered chain, with keys,
limits, routing, a lossless inference log, feedback and document access control.

Module contracts: docs/gateway-design.md.
"""
