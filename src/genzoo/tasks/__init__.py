"""Verbs that join models and the store: generate-and-record, RAG answers, image search, encoders.

The only layer that both loads models and writes into ``genzoo.store``; the store itself never
imports it (an encoder or a manifest reaches the store as a plain object).
"""
